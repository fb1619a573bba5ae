"""Adversarial training at scale: one loop, recipes as data, guards, exact resume, DDP.

Example:
    >>> from advscale.train import load_config, train
    >>> cfg = load_config("configs/kurakin_step_ll.yaml", ["epochs=2", "recipe.eps=8"])  # doctest: +SKIP
    >>> summary = train(cfg, "runs/kurakin")  # doctest: +SKIP
    >>> summary["clean_accuracy"], summary["pgd_accuracy"]  # doctest: +SKIP

On the command line: ``advscale train --config configs/pgd.yaml --out runs/pgd --set epochs=3``;
with several processes: ``torchrun --nproc_per_node 2 -m advscale train ...``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from advscale.train.config import (
    RECIPES,
    ConfigError,
    DataConfig,
    EvalConfig,
    GuardConfig,
    ModelConfig,
    OptimizerConfig,
    RecipeConfig,
    ScheduleConfig,
    Section,
    TrainConfig,
    apply_overrides,
    config_to_dict,
    load_config,
    validate_config,
)
from advscale.train.distributed import process_rank
from advscale.train.guards import CatastrophicOverfitGuard, NonFiniteLossError
from advscale.train.loop import Trainer, train
from advscale.train.optim import lr_factor
from advscale.train.recipes import (
    NFGSM,
    RSFGSM,
    FGSMRecipe,
    Kurakin,
    PGDRecipe,
    Recipe,
    RecipeBatch,
    build_recipe,
    signed_gradient_step,
)


def run_train_command(args: argparse.Namespace) -> int:
    """``advscale train --config C --out D [--resume] [--force] [--set K=V ...]``."""
    cfg = load_config(args.config, list(args.set or []))
    summary = train(cfg, args.out, resume=args.resume, force=args.force)
    keys = (
        "recipe",
        "eps",
        "epochs",
        "steps",
        "clean_accuracy",
        "fgsm_accuracy",
        "pgd_accuracy",
        "time_per_epoch_s",
        "images_per_s",
        "stop_reason",
    )
    print_summary(summary, keys, wrote=Path(args.out) / "results.json")
    return 0


def print_summary(summary: dict, keys: tuple[str, ...], wrote: Path | None = None) -> None:
    """Print the ``keys`` of a run summary as JSON, its events (catastrophic overfitting...) and
    the results file ``wrote``.

    Under ``torchrun`` only rank 0 prints: every process holds the same summary.
    """
    if process_rank() != 0:
        return
    print(json.dumps({k: summary.get(k) for k in keys if k in summary}, indent=2))
    for ev in summary.get("events", []):
        print(f"event: {ev.get('event')} at step {ev.get('step')}: {ev.get('reason', '')}")
    if wrote is not None:
        print(f"wrote {wrote}")


__all__ = [
    "print_summary",
    "NFGSM",
    "RECIPES",
    "RSFGSM",
    "CatastrophicOverfitGuard",
    "ConfigError",
    "DataConfig",
    "EvalConfig",
    "FGSMRecipe",
    "GuardConfig",
    "Kurakin",
    "ModelConfig",
    "NonFiniteLossError",
    "OptimizerConfig",
    "PGDRecipe",
    "Recipe",
    "RecipeBatch",
    "RecipeConfig",
    "ScheduleConfig",
    "Section",
    "TrainConfig",
    "Trainer",
    "apply_overrides",
    "build_recipe",
    "config_to_dict",
    "load_config",
    "lr_factor",
    "run_train_command",
    "signed_gradient_step",
    "train",
    "validate_config",
]
