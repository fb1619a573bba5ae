"""Cost and robustness of clean, FGSM and PGD-7 fine-tuning, in full and linear modes.

Every run fine-tunes the same robust backbone (``experiments/transfer/pretrain.yaml``) on the
same scikit-learn digits subset with the same seed, optimizer and epochs, through the one
training loop (``advscale finetune``); only the recipe and the mode change. Robust accuracy is
measured after each run with PGD-10 and APGD-CE on the held-out digits at ε=8/255.

Time per epoch: on a shared machine the load changes while the runs go on, so the six
configurations are also timed round-robin, one optimizer step (``Trainer.train_step``: attack,
forward, backward, update) each in turn on the same batch, and time per epoch is the median step
time × steps per epoch. The runs' own epoch times are recorded beside it.

Targets (paper B: FGSM fine-tuning is 4× cheaper than PGD and loses 1.39 points at ε=8):
FGSM ≥ 3.5× faster than PGD-7 per epoch, and FGSM's robust accuracy at most 1.5 points below
PGD-7's, in each mode.

Usage:
    advscale train --config experiments/transfer/pretrain.yaml --out runs/transfer/pretrain
    python benchmarks/finetune_cost.py   # writes benchmarks/results/finetune_cost.{json,md}
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Hashable
from pathlib import Path
from typing import Any, TypeVar

import torch
from _common import save_results, sync
from torch import Tensor

from advscale.transfer import FinetuneConfig, FinetuneTrainer, finetune, load_finetune_config
from advscale.utils import environment_info, resolve_device

RECIPES = ("clean", "fgsm", "pgd")
MODES = ("full", "linear")
TARGET_SPEEDUP = 3.5
TARGET_GAP_POINTS = 1.5
ROOT = Path(__file__).resolve().parents[1]
K = TypeVar("K", bound=Hashable)


def _overrides(recipe: str, mode: str, args: argparse.Namespace) -> list[str]:
    return [
        f"backbone.path={args.backbone}",
        f"finetune.mode={mode}",
        f"recipe.name={recipe}",
        f"recipe.eps={args.eps:g}",
        f"recipe.steps={args.pgd_steps}",
        f"epochs={args.epochs}",
        f"data.n_train={args.n_train}",
        f"eval.n={args.n_eval}",
        f"eval.eps=[{args.eps:g}]",
        "eval.label_leak=false",
        f"device={args.device}",
        "progress=false",
        "tensorboard=false",
        "seed=0",
    ]


def run_one(recipe: str, mode: str, args: argparse.Namespace, root: Path) -> dict[str, Any]:
    cfg = load_finetune_config(
        ROOT / "configs" / "finetune_fmnist_digits.yaml", _overrides(recipe, mode, args)
    )
    t0 = time.perf_counter()
    summary = finetune(cfg, root / f"{recipe}-{mode}", force=True)
    wall = time.perf_counter() - t0
    epochs = [r for r in _epoch_records(root / f"{recipe}-{mode}") if r.get("complete")]
    per_epoch = [r["time_s"] for r in epochs]
    robust = summary.get("robust_accuracy", {})
    key = f"{args.eps:g}"
    return {
        "recipe": recipe,
        "mode": mode,
        "eps": args.eps,
        "epochs": len(per_epoch),
        "run_epoch_times_s": per_epoch,
        "trainable_params": summary["trainable_params"],
        "total_params": summary["total_params"],
        "clean_accuracy": summary["clean_accuracy"],
        "pgd_accuracy": robust.get("pgd", {}).get(key),
        "apgd_accuracy": robust.get("apgd", {}).get(key),
        "robust_accuracy": robust.get("worst_case", {}).get(key),
        "co_events": sum(
            e.get("event") == "catastrophic_overfit" for e in summary.get("events", [])
        ),
        "run_wall_s": wall,
    }


def build_trainers(configs: dict[K, FinetuneConfig], root: Path) -> dict[K, FinetuneTrainer]:
    """A set-up :class:`FinetuneTrainer` per configuration, in ``root/steps-KEY``."""
    trainers = {}
    for key, cfg in configs.items():
        name = "-".join(map(str, key)) if isinstance(key, tuple) else str(key)
        t = FinetuneTrainer(cfg, root / f"steps-{name}", force=True)
        t.setup()
        trainers[key] = t
    return trainers


def step_times(
    trainers: dict[K, FinetuneTrainer],
    warmup: int,
    reps: int,
    batch: tuple[Tensor, Tensor] | None = None,
) -> dict[K, dict[str, float]]:
    """Median seconds per optimizer step (``train_step``: attack, forward, backward, update) of
    every trainer, timed round-robin on one batch (default: the first trainer's first batch)
    after ``warmup`` untimed rounds; the trainer's device is synchronized before each clock read
    (CUDA runs asynchronously). Also gives each trainer's ``steps_per_epoch``."""
    x, y = batch if batch is not None else next(iter(next(iter(trainers.values())).loader))
    times: dict[K, list[float]] = {k: [] for k in trainers}
    for rep in range(warmup + reps):
        for key, t in trainers.items():
            sync(t.dist.device)
            start = time.perf_counter()
            t.train_step([(x, y)])
            sync(t.dist.device)
            if rep >= warmup:
                times[key].append(time.perf_counter() - start)
    return {
        key: {
            "median_step_s": statistics.median(v),
            "steps_per_epoch": trainers[key].steps_per_epoch,
        }
        for key, v in times.items()
    }


def _epoch_records(run: Path) -> list[dict[str, Any]]:
    import json

    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r.get("type") == "epoch"]


def compare_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    by = {(r["recipe"], r["mode"]): r for r in rows}
    out = []
    for mode in MODES:
        clean, fgsm, pgd = (by[(rec, mode)] for rec in RECIPES)
        speedup = pgd["time_per_epoch_s"] / fgsm["time_per_epoch_s"]
        gap = 100 * (pgd["robust_accuracy"] - fgsm["robust_accuracy"])
        out.append(
            {
                "mode": mode,
                "fgsm_over_clean": fgsm["time_per_epoch_s"] / clean["time_per_epoch_s"],
                "pgd_over_clean": pgd["time_per_epoch_s"] / clean["time_per_epoch_s"],
                "pgd_over_fgsm": speedup,
                "robust_gap_points": gap,
                "meets_speedup": speedup >= TARGET_SPEEDUP,
                "meets_gap": gap <= TARGET_GAP_POINTS,
            }
        )
    return out


def markdown(res: dict[str, Any]) -> str:
    rows, ratios, env, cfg = res["runs"], res["ratios"], res["environment"], res["config"]
    lines = [
        "# Fine-tuning cost: clean vs FGSM vs PGD-7, full and linear",
        "",
        f"Fashion-MNIST classes 0-4 robust backbone (small_cnn, PGD-5 ε=8) → scikit-learn digits "
        f"({cfg['n_train']} training images, {cfg['epochs']} epochs, batch 64), ε={cfg['eps']:g}/255; robust accuracy = worst "
        f"case of PGD-10 and APGD-CE-20 on {cfg['n_eval']} test digits.",
        "",
        f"Machine: {env['cpu']} ({env['cpu_count']} cores, {env['torch_threads']} torch threads), "
        f"torch {env['torch']}, device {env['device']}; load average at start {env.get('loadavg_start')}, "
        f"at end {env.get('loadavg_end')}.",
        "",
        f"s / epoch = median of {cfg['reps']} optimizer steps timed round-robin × steps per epoch; run s / epoch = "
        "the median epoch of the fine-tuning run itself (exposed to load changes between runs).",
        "",
        "| recipe | mode | s / epoch | run s / epoch | trainable params | clean % | PGD % | APGD % | robust % | CO events |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        run_epoch = (
            statistics.median(r["run_epoch_times_s"]) if r["run_epoch_times_s"] else float("nan")
        )
        lines.append(
            f"| {r['recipe']} | {r['mode']} | {r['time_per_epoch_s']:.2f} | {run_epoch:.2f} | {r['trainable_params']:,} | "
            f"{100 * r['clean_accuracy']:.1f} | {100 * r['pgd_accuracy']:.1f} | {100 * r['apgd_accuracy']:.1f} | "
            f"{100 * r['robust_accuracy']:.1f} | {r['co_events']} |"
        )
    lines += [
        "",
        f"Targets: PGD-7 / FGSM time ≥ {TARGET_SPEEDUP}, robust gap (PGD-7 minus FGSM) ≤ {TARGET_GAP_POINTS} points.",
        "",
        "| mode | FGSM / clean | PGD-7 / clean | PGD-7 / FGSM | robust gap (points) | speed target | gap target |",
        "|---|---|---|---|---|---|---|",
    ]
    for q in ratios:
        lines.append(
            f"| {q['mode']} | {q['fgsm_over_clean']:.2f} | {q['pgd_over_clean']:.2f} | {q['pgd_over_fgsm']:.2f} | "
            f"{q['robust_gap_points']:+.2f} | {'met' if q['meets_speedup'] else 'MISSED'} | "
            f"{'met' if q['meets_gap'] else 'MISSED'} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument(
        "--backbone", type=Path, default=ROOT / "runs" / "transfer" / "pretrain" / "model"
    )
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--n-train", type=int, default=1000)
    p.add_argument("--n-eval", type=int, default=359)
    p.add_argument("--eps", type=float, default=8.0)
    p.add_argument("--pgd-steps", type=int, default=7)
    p.add_argument("--device", default="cpu")
    p.add_argument("--warmup", type=int, default=2, help="untimed round-robin steps")
    p.add_argument("--reps", type=int, default=7, help="timed round-robin steps per configuration")
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch intra-op threads (1: steadiest on a shared CPU)",
    )
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "finetune_cost")
    args = p.parse_args(argv)
    if not args.backbone.with_suffix(".json").exists():
        print(
            f"no backbone at {args.backbone}; make it with:\n  advscale train --config "
            "experiments/transfer/pretrain.yaml --out runs/transfer/pretrain",
            file=sys.stderr,
        )
        return 2
    torch.set_num_threads(args.threads)
    env = environment_info(resolve_device(args.device))
    env["loadavg_start"] = round(os.getloadavg()[0], 2)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        print("timing optimizer steps round-robin ...", flush=True)
        configs = {
            (recipe, mode): load_finetune_config(
                ROOT / "configs" / "finetune_fmnist_digits.yaml", _overrides(recipe, mode, args)
            )
            for mode in MODES
            for recipe in RECIPES
        }
        steps = step_times(build_trainers(configs, Path(tmp)), args.warmup, args.reps)
        for mode in MODES:
            for recipe in RECIPES:
                print(f"{recipe} / {mode} ...", flush=True)
                row = run_one(recipe, mode, args, Path(tmp))
                st = steps[(recipe, mode)]
                row.update(st, time_per_epoch_s=st["median_step_s"] * st["steps_per_epoch"])
                rows.append(row)
    env["loadavg_end"] = round(os.getloadavg()[0], 2)
    ratios = compare_rows(rows)
    config = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    result = {
        "benchmark": "finetune_cost",
        "environment": env,
        "config": config,
        "runs": rows,
        "ratios": ratios,
        "targets": {
            "pgd_over_fgsm_min": TARGET_SPEEDUP,
            "robust_gap_points_max": TARGET_GAP_POINTS,
        },
    }
    save_results(args.out, result, markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
