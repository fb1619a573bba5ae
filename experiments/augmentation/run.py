"""What training augmentation does to the Fashion-MNIST RS-FGSM and PGD recipes.

Trains four runs with ``advscale.train``: the recipes of ``configs/rs_fgsm.yaml`` and
``configs/pgd.yaml``, each with ``data.augment: none`` and ``data.augment: crop_flip`` (pad 4,
random 28x28 crop, horizontal flip), at the same seed and the same budget (``--set`` overrides
on top of the recipe's own config). Each run's own final evaluation measures clean and PGD-20
accuracy (random start, step 2.5ε/20) at the recipe's training ε on the same class-stratified
Fashion-MNIST test subset (fixed by the seed).

Writes one run directory per run under ``--work`` and ``--out``.{json,md} (default
benchmarks/results/augment_effect): the table (recipe × augment: clean %, PGD-20 %, training
seconds), the machine, the versions, the settings and one sentence on what the numbers show.

Usage:
    nice -n 5 python experiments/augmentation/run.py                # the committed numbers
    python experiments/augmentation/run.py --tiny --out /tmp/aug    # a few seconds, a smoke test
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch

from advscale.train import load_config, train
from advscale.utils import atomic_write_json, atomic_write_text, environment_info

ROOT = Path(__file__).resolve().parents[2]
RECIPES = {"rs_fgsm": "configs/rs_fgsm.yaml", "pgd": "configs/pgd.yaml"}
AUGMENTS = ("none", "crop_flip")
NAMES = {"rs_fgsm": "RS-FGSM", "pgd": "PGD-7"}

# The full-size budget fits all four runs in about 25 minutes on a shared two-core CPU.
FULL = {"n_train": 4000, "epochs": 5, "eval_n": 1000, "guard_n": 256}
TINY = {"n_train": 64, "epochs": 1, "eval_n": 32, "guard_n": 16, "batch_size": 32}


def overrides(
    n_train: int,
    epochs: int,
    eval_n: int,
    guard_n: int,
    seed: int,
    device: str,
    batch_size: int | None = None,
) -> dict[str, Any]:
    """The ``--set`` overrides shared by the four runs (the recipe's config gives the rest;
    ``batch_size`` None keeps the recipe's)."""
    sets = {"batch_size": batch_size} if batch_size is not None else {}
    return {
        **sets,
        "data.n_train": n_train,
        "data.n_val": eval_n,
        "epochs": epochs,
        "seed": seed,
        "device": device,
        "guard.n": guard_n,
        "eval.n": eval_n,
        "eval.eps": "null",  # the recipe's training ε
        "eval.attacks": "[pgd]",
        "eval.attack_kwargs": "{pgd: {steps: 20, restarts: 1}}",
        "eval.label_leak": "false",
        "progress": "false",
        "tensorboard": "false",
    }


def run_one(recipe: str, augment: str, shared: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    """Train one run; its row of the table, read back from what the run wrote."""
    sets = {**shared, "data.augment": augment}
    cfg = load_config(ROOT / RECIPES[recipe], [f"{k}={v}" for k, v in sets.items()])
    t0 = time.perf_counter()
    summary = train(cfg, run_dir, force=True)
    wall = time.perf_counter() - t0
    recorded = json.loads((run_dir / "config.json").read_text())
    return {
        "recipe": recipe,
        "augment": augment,
        "augment_recorded": recorded["data"]["augment"],
        "eps": summary["eps"],
        "eval_eps": summary["eval_eps"],
        "clean_accuracy": summary["clean_accuracy"],
        "pgd20_accuracy": summary["pgd_accuracy"],
        "train_s": summary["train_time_s"],
        "wall_s": wall,
        "steps": summary["steps"],
        "stopped_early": summary["stopped_early"],
        "stop_reason": summary["stop_reason"],
        "run_dir": os.path.relpath(run_dir, ROOT),
    }


def pct(v: float) -> str:
    return f"{100 * v:.1f}"


def stderr_points(p: float, n: int) -> float:
    """The binomial standard error, in points, of an accuracy ``p`` measured on ``n`` images."""
    return 100 * math.sqrt(max(p * (1 - p), 1e-12) / n)


def effect(runs: list[dict[str, Any]], n: int) -> dict[str, dict[str, float]]:
    """Per recipe and metric: crop_flip minus none in points, and twice the standard error of
    that difference (two independent binomial measurements on ``n`` images)."""
    out: dict[str, dict[str, float]] = {}
    for recipe in RECIPES:
        by = {r["augment"]: r for r in runs if r["recipe"] == recipe}
        if set(by) != set(AUGMENTS):
            continue
        row = {}
        for metric in ("clean_accuracy", "pgd20_accuracy"):
            a, b = by["crop_flip"][metric], by["none"][metric]
            row[f"{metric}_delta"] = 100 * (a - b)
            row[f"{metric}_2se"] = 2 * math.hypot(stderr_points(a, n), stderr_points(b, n))
        out[recipe] = row
    return out


def _verdict(delta: float, two_se: float) -> str:
    if abs(delta) <= two_se:
        return f"{delta:+.1f} (within noise, ±{two_se:.1f})"
    return f"{delta:+.1f} ({'better' if delta > 0 else 'worse'} beyond ±{two_se:.1f})"


def conclusion(result: dict[str, Any]) -> str:
    """One sentence, computed from the numbers, on what crop + flip did."""
    s, eff = result["settings"], result["effect"]
    parts = [
        f"{NAMES[r]}: clean {_verdict(e['clean_accuracy_delta'], e['clean_accuracy_2se'])}, "
        f"PGD-20 {_verdict(e['pgd20_accuracy_delta'], e['pgd20_accuracy_2se'])} points"
        for r, e in eff.items()
    ]
    return (
        f"With {s['n_train']} training images and {s['epochs']} epochs (one seed, "
        f"{s['eval_n']} test images), crop + flip against no augmentation: "
        + "; ".join(parts)
        + "."
    )


def to_markdown(result: dict[str, Any]) -> str:
    s, env = result["settings"], result["environment"]
    lines = [
        "# Augmentation and the Fashion-MNIST RS-FGSM and PGD recipes",
        "",
        "Generated by `experiments/augmentation/run.py`. Accuracy in %, on the same "
        f"{s['eval_n']} Fashion-MNIST test images for every run; PGD-20 at the recipe's training "
        f"ε ({result['runs'][0]['eval_eps']:g}/255), random start, step 2.5ε/20.",
        "",
        "| recipe | augment | clean % | PGD-20 % | training s | steps | stopped early |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in result["runs"]:
        lines.append(
            f"| {NAMES[r['recipe']]} | {r['augment']} | {pct(r['clean_accuracy'])} | "
            f"{pct(r['pgd20_accuracy'])} | {r['train_s']:.0f} | {r['steps']} | "
            f"{r['stop_reason'] or 'no'} |"
        )
    lines += ["", result["conclusion"], ""]
    lines += [
        "**Settings.** "
        + ", ".join(f"{NAMES[k]} from `{RECIPES[k]}`" for k in s["configs"])
        + f"; for every run `--set` {', '.join(f'`{k}={v}`' for k, v in s['overrides'].items())}"
        "; augmented runs add `data.augment=crop_flip` (crop padding "
        f"{s['crop_padding']}). Torch threads: {s['threads']}.",
        "",
        f"**Machine.** {env['cpu']} ({env['cpu_count']} cores), {env['platform']}; "
        f"advscale {env['advscale']}, torch {env['torch']}, numpy {env['numpy']}, "
        f"Python {env['python']}. Training seconds are the training steps alone (no guard "
        "checks, no evaluation), taken on a shared machine under other jobs' load (load average "
        f"{s['load_before']:.1f} before, {s['load_after']:.1f} after): compare them within this "
        "table only. Accuracy does not depend on the load.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tiny", action="store_true", help="64 images, 1 epoch: a smoke test")
    p.add_argument("--n-train", type=int, help=f"training images (default {FULL['n_train']})")
    p.add_argument("--epochs", type=int, help=f"default {FULL['epochs']}")
    p.add_argument("--eval-n", type=int, help=f"test images (default {FULL['eval_n']})")
    p.add_argument(
        "--recipes", default=",".join(RECIPES), help="comma-separated: rs_fgsm, pgd (default both)"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/augment_effect")
    p.add_argument("--work", type=Path, default=ROOT / "runs/augmentation")
    args = p.parse_args(argv)
    size = dict(TINY if args.tiny else FULL)
    for key in ("n_train", "epochs", "eval_n"):
        if getattr(args, key) is not None:
            size[key] = getattr(args, key)
    torch.set_num_threads(args.threads)
    shared = overrides(**size, seed=args.seed, device=args.device)
    load_before = os.getloadavg()[0]
    recipes = [r.strip() for r in args.recipes.split(",") if r.strip()]
    unknown = [r for r in recipes if r not in RECIPES]
    if unknown or not recipes:
        p.error(f"--recipes {args.recipes!r}: allowed {', '.join(RECIPES)}")
    runs = []
    for recipe in recipes:
        for augment in AUGMENTS:
            row = run_one(recipe, augment, shared, args.work / f"{recipe}_{augment}")
            runs.append(row)
            print(
                f"{recipe} {augment}: clean {pct(row['clean_accuracy'])} "
                f"PGD-20 {pct(row['pgd20_accuracy'])} ({row['train_s']:.0f} s training)",
                flush=True,
            )
    base = load_config(ROOT / RECIPES["rs_fgsm"])
    result: dict[str, Any] = {
        "experiment": "augment_effect",
        "environment": environment_info(args.device),
        "settings": {
            **size,
            "seed": args.seed,
            "threads": args.threads,
            "crop_padding": base.data.crop_padding,
            "configs": {r: RECIPES[r] for r in recipes},
            "overrides": shared,
            "load_before": load_before,
            "load_after": os.getloadavg()[0],
            "command": " ".join(
                [
                    "python",
                    "experiments/augmentation/run.py",
                    *(sys.argv[1:] if argv is None else argv),
                ]
            ),
        },
        "runs": runs,
        "effect": effect(runs, size["eval_n"]),
    }
    result["conclusion"] = conclusion(result)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out.with_suffix(".json"), result)
    text = to_markdown(result)
    atomic_write_text(args.out.with_suffix(".md"), text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
