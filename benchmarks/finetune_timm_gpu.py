"""Adversarial fine-tuning throughput of a timm backbone at 224x224, per mode and recipe (GPU).

Every (mode, recipe) runs through the same ``FinetuneTrainer.train_step`` on the same batch,
timed round-robin after a warm-up (``finetune_cost.step_times``); images/s is the batch size
over the median step time. The timed batch is synthetic (3x224x224): speed does not depend on
the pixel values, and no backbone weights are downloaded (random initialization, same cost as
pretrained weights). Fashion-MNIST must still be on disk (``$ADVSCALE_DATA`` or
``/usr/share/datasets``): ``FinetuneTrainer.setup()`` loads its training images for the
trainers' data loaders, which the timed steps do not use.

Usage:
    python benchmarks/finetune_timm_gpu.py --device cuda --model swin_tiny_patch4_window7_224 \
        --out benchmarks/results/finetune_timm_gpu
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch
from _common import save_results
from finetune_cost import build_trainers, step_times

from advscale.transfer.finetune import FinetuneConfig, load_finetune_config
from advscale.utils import environment_info

MODES = ("full", "linear", "lora", "bias")
RECIPES = ("clean", "fgsm", "pgd")


def config(mode: str, recipe: str, args: argparse.Namespace) -> FinetuneConfig:
    overrides = [
        "backbone.kind=timm",
        f"backbone.name={args.model}",
        f"finetune.mode={mode}",
        f"recipe.name={recipe}",
        "recipe.eps=8",
        f"recipe.steps={args.pgd_steps}",
        "data.name=fashion-mnist",
        f"data.n_train={args.batch_size * 2}",
        "data.n_val=64",
        f"batch_size={args.batch_size}",
        f"device={args.device}",
        f"amp={args.amp}",
        f"channels_last={str(args.channels_last).lower()}",
        "progress=false",
        "tensorboard=false",
        "guard.enabled=false",
        "seed=0",
    ]
    return load_finetune_config(None, overrides)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda")
    p.add_argument("--model", default="swin_tiny_patch4_window7_224")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--pgd-steps", type=int, default=7)
    p.add_argument("--amp", default="bf16", choices=["none", "bf16", "fp16"])
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument(
        "--out", type=Path, default=Path(__file__).parent / "results" / "finetune_timm_gpu"
    )
    args = p.parse_args(argv)

    params: dict[str, tuple[int, int]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        configs = {(m, r): config(m, r, args) for m in MODES for r in RECIPES}
        trainers = build_trainers(configs, Path(tmp))
        dev = next(iter(trainers.values())).dist.device
        g = torch.Generator().manual_seed(0)
        x = torch.rand((args.batch_size, 3, 224, 224), generator=g).to(dev)
        y = torch.randint(0, 10, (args.batch_size,), generator=g).to(dev)
        for (m, _), t in trainers.items():
            model = t.model.module if hasattr(t.model, "module") else t.model
            params[m] = (
                sum(q.numel() for q in model.parameters() if q.requires_grad),
                sum(q.numel() for q in model.parameters()),
            )
        steps = step_times(trainers, args.warmup, args.reps, batch=(x, y))
    rows = []
    for (m, r), st in steps.items():
        med = st["median_step_s"]
        rows.append(
            {
                "mode": m,
                "recipe": r if r != "pgd" else f"pgd-{args.pgd_steps}",
                "median_step_s": med,
                "images_per_s": args.batch_size / med,
                "trainable_params": params[m][0],
                "total_params": params[m][1],
            }
        )
    res: dict[str, Any] = {
        "benchmark": "finetune_timm_gpu",
        "environment": environment_info(dev),
        "settings": {
            "model": args.model,
            "input": "synthetic 3x224x224",
            "batch_size": args.batch_size,
            "eps": 8,
            "amp": args.amp,
            "channels_last": args.channels_last,
            "warmup": args.warmup,
            "reps": args.reps,
        },
        "rows": rows,
    }
    save_results(args.out, res, to_markdown)
    return 0


def to_markdown(res: dict[str, Any]) -> str:
    env, s = res["environment"], res["settings"]
    by = {(r["mode"], r["recipe"]): r for r in res["rows"]}
    recipes = sorted(
        {r["recipe"] for r in res["rows"]},
        key=lambda n: ["clean", "fgsm"].index(n) if n in ("clean", "fgsm") else 2,
    )
    lines = [
        f"# Adversarial fine-tuning throughput: {s['model']} at 224x224",
        "",
        f"{env.get('gpu', env['cpu'])}, torch {env['torch']}, advscale {env['advscale']}; batch "
        f"{s['batch_size']}, amp {s['amp']}, ε = 8/255, {s['input']}; median of {s['reps']} steps "
        f"after {s['warmup']} warm-up steps, timed round-robin. Images/s per optimizer step.",
        "",
        "| mode | trainable / total params | " + " | ".join(recipes) + " | PGD / FGSM time |",
        "|---|---|" + "---:|" * len(recipes) + "---:|",
    ]
    for m in MODES:
        row = by[(m, "clean")]
        cells = [f"{by[(m, r)]['images_per_s']:.0f}" for r in recipes]
        pgd = [r for r in recipes if r.startswith("pgd")][0]
        ratio = by[(m, pgd)]["median_step_s"] / by[(m, "fgsm")]["median_step_s"]
        lines.append(
            f"| {m} | {row['trainable_params']:,} / {row['total_params']:,} | "
            + " | ".join(cells)
            + f" | {ratio:.2f}× |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
