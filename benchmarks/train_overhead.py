"""Cost of adversarial training recipes relative to clean training, per optimizer step.

Every recipe runs through the same ``Trainer.train_step`` (recipe, forward, backward, optimizer
step) on the same model and the same real Fashion-MNIST batch. Recipes are timed round-robin, so
a change in machine load during the run hits all of them alike; each number is the median over
repetitions after a warm-up. Targets on CPU: one-step recipes ≤ 2.2× clean, kurakin with half
the batch adversarial ≤ 1.7×, PGD-k ≤ (k + 1.2)×.

Usage:
    python benchmarks/train_overhead.py                 # CPU, writes benchmarks/results/train_overhead.{json,md}
    python benchmarks/train_overhead.py --device cuda --out benchmarks/results/train_overhead_cuda
    # PreAct ResNet-18 on CIFAR-shaped synthetic batches, bf16 + channels_last + compile:
    python benchmarks/train_overhead.py --device cuda --arch preact_resnet18 --synthetic \
        --batch-size 512 --amp bf16 --channels-last --compile --out benchmarks/results/train_preact_cuda

With ``--synthetic`` the batch is random CIFAR-10-shaped data (3x32x32, 10 classes): speed does
not depend on the pixel values. The report also projects the wall time of 15 epochs of RS-FGSM
on 50k images (Wong et al. 2020 report 12 minutes for PreAct ResNet-18 on CIFAR-10).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from _common import save_results, sync

from advscale.train import Trainer, load_config
from advscale.utils import environment_info

RECIPES = ("clean", "kurakin", "fgsm", "rs_fgsm", "n_fgsm", "pgd")


def targets(pgd_steps: int) -> dict[str, float]:
    one_step = 2.2
    return {
        "clean": 1.0,
        "kurakin": 1.7,
        "fgsm": one_step,
        "rs_fgsm": one_step,
        "n_fgsm": one_step,
        "pgd": pgd_steps + 1.2,
    }


def build(recipe: str, args: argparse.Namespace, root: Path) -> Trainer:
    settings = {
        "recipe.name": recipe,
        "recipe.eps": 8,
        "recipe.steps": args.pgd_steps,
        "batch_size": args.batch_size,
        "data.n_train": args.batch_size * 2,
        "data.n_val": 64,
        "model.arch": args.arch,
        "model.kwargs": f"{{width: {args.width}}}"
        if not args.synthetic
        else f"{{width: {args.width}, in_channels: 3}}",
        "compile": str(args.compile).lower(),
        "device": args.device,
        "progress": "false",
        "tensorboard": "false",
        "guard.enabled": "false",
        "amp": args.amp,
        "channels_last": str(args.channels_last).lower(),
        "seed": 0,
    }
    cfg = load_config(None, [f"{k}={v}" for k, v in settings.items()])
    trainer = Trainer(cfg, root / recipe, force=True)
    trainer.setup()
    return trainer


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--width", type=float, default=1.0, help="small_cnn width multiplier")
    p.add_argument("--pgd-steps", type=int, default=7)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--reps", type=int, default=15)
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads on CPU")
    p.add_argument("--amp", default="none", choices=["none", "bf16", "fp16"])
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    p.add_argument(
        "--arch", default="small_cnn", help="model architecture (small_cnn, preact_resnet18, ...)"
    )
    p.add_argument("--synthetic", action="store_true", help="random CIFAR-shaped batches (3x32x32)")
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "train_overhead")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        trainers = {r: build(r, args, Path(tmp)) for r in RECIPES}
        device = trainers["clean"].dist.device
        x, y = next(iter(trainers["clean"].loader))
        if args.synthetic:
            g = torch.Generator().manual_seed(0)
            x = torch.rand((args.batch_size, 3, 32, 32), generator=g).to(device)
            y = torch.randint(0, 10, (args.batch_size,), generator=g).to(device)
        times: dict[str, list[float]] = {r: [] for r in RECIPES}
        for rep in range(args.warmup + args.reps):
            for r, t in trainers.items():
                sync(device)
                start = time.perf_counter()
                t.train_step([(x, y)])
                sync(device)
                if rep >= args.warmup:
                    times[r].append(time.perf_counter() - start)
    load_after = os.getloadavg()

    med = {r: statistics.median(v) for r, v in times.items()}
    goal = targets(args.pgd_steps)
    rows = []
    for r in RECIPES:
        ratio = med[r] / med["clean"]
        rows.append(
            {
                "recipe": r if r != "pgd" else f"pgd-{args.pgd_steps}",
                "median_step_s": med[r],
                "min_step_s": min(times[r]),
                "ratio_to_clean": ratio,
                "target_ratio": goal[r],
                "meets_target": ratio <= goal[r],
                "images_per_s": args.batch_size / med[r],
            }
        )
    result: dict[str, Any] = {
        "benchmark": "train_overhead",
        "environment": environment_info(device),
        "settings": {
            "model": f"{args.arch} width {args.width}",
            "compile": args.compile,
            "batch_size": args.batch_size,
            "eps": 8,
            "pgd_steps": args.pgd_steps,
            "kurakin": f"k = m/2 = {args.batch_size // 2} of {args.batch_size}, step_ll",
            "warmup": args.warmup,
            "reps": args.reps,
            "threads": torch.get_num_threads(),
            "amp": args.amp,
            "channels_last": args.channels_last,
            "device": str(device),
            "data": "synthetic CIFAR-shaped batch (3x32x32)"
            if args.synthetic
            else "Fashion-MNIST batch",
        },
        # 15 epochs of RS-FGSM on 50k images at the measured step time (Wong et al. 2020: 12 min).
        "projected_rs_fgsm_15_epochs_50k_s": 15 * -(-50000 // args.batch_size) * med["rs_fgsm"],
        "load_average": {"before": load_before, "after": load_after},
        "rows": rows,
    }
    save_results(args.out, result, to_markdown)
    return 0


def to_markdown(res: dict[str, Any]) -> str:
    env, s = res["environment"], res["settings"]
    lines = [
        "# Training overhead per optimizer step, relative to clean training",
        "",
        f"Machine: {env.get('gpu') or env['cpu']} ({env['cpu_count']} CPUs, {s['threads']} torch thread(s)), "
        f"{env['platform']}; torch {env['torch']}, advscale {env['advscale']}, Python {env['python']}.",
        f"Load average (1/5/15 min) before: {'/'.join(f'{v:.1f}' for v in res['load_average']['before'])}, "
        f"after: {'/'.join(f'{v:.1f}' for v in res['load_average']['after'])}.",
        f"Setup: {s['model']}, batch {s['batch_size']}, ε = 8/255, device {s['device']}, amp {s['amp']}, "
        f"compile {s.get('compile', False)}, {s['data']}; median of {s['reps']} steps after {s['warmup']} warm-up steps, recipes timed round-robin.",
        "",
        f"Projected wall time of 15 epochs of RS-FGSM on 50k images at this step time: "
        f"{res['projected_rs_fgsm_15_epochs_50k_s'] / 60:.1f} min (Wong et al. 2020: 12 min on an older GPU).",
        "",
        "| recipe | median s/step | × clean | target | meets | images/s |",
        "|---|---|---|---|---|---|",
    ]
    for r in res["rows"]:
        lines.append(
            f"| {r['recipe']} | {r['median_step_s']:.4f} | {r['ratio_to_clean']:.2f} | "
            f"≤ {r['target_ratio']:.1f} | {'yes' if r['meets_target'] else 'no'} | {r['images_per_s']:.0f} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
