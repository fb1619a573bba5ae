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

__all__ = [
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
    "signed_gradient_step",
    "train",
    "validate_config",
]
