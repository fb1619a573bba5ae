"""Attacks: the one-step and iterative attacks of paper A, PGD, and APGD, FAB-T and Square for evaluation.

All take images in [0, 1] and return adversarial images in [0, 1] within the ε-ball.

Example:
    >>> from advscale.attacks import PGD
    >>> x_adv = PGD(model, eps=8 / 255, steps=10)(x, y)  # doctest: +SKIP
"""

from advscale.attacks.apgd import APGD, APGDL2, APGDT, APGDTL2, apgd_checkpoints
from advscale.attacks.base import (
    Attack,
    AttackResult,
    GradientAttack,
    as_eps,
    ascent_step,
    canonical_norm,
    ce_loss,
    dlr_loss,
    lp_norm,
    model_mode,
    project,
    random_start,
)
from advscale.attacks.cascade import StrongCascade
from advscale.attacks.fab import FABT, FABTL2
from advscale.attacks.iterative import PGD, PGDL2, IterBasic, IterLL, kurakin_steps
from advscale.attacks.one_step import (
    FGSM,
    FastGradientL2,
    FGSMPred,
    OneStepAttack,
    RandomSign,
    StepLL,
    StepRnd,
)
from advscale.attacks.reference import AutoAttack, PassCounter
from advscale.attacks.registry import (
    ALIASES,
    ATTACKS,
    ITERATIVE_OF,
    ONE_STEP,
    attack_norm,
    build_attack,
    canonical_name,
    list_attacks,
)
from advscale.attacks.square import Square, SquareL2, margin_loss, square_fraction, square_side

__all__ = [
    "ALIASES",
    "APGD",
    "APGDL2",
    "APGDT",
    "APGDTL2",
    "ATTACKS",
    "AutoAttack",
    "FABT",
    "FABTL2",
    "PassCounter",
    "SquareL2",
    "StrongCascade",
    "attack_norm",
    "canonical_name",
    "canonical_norm",
    "ITERATIVE_OF",
    "ONE_STEP",
    "PGD",
    "PGDL2",
    "Attack",
    "AttackResult",
    "FGSM",
    "FGSMPred",
    "FastGradientL2",
    "GradientAttack",
    "IterBasic",
    "IterLL",
    "OneStepAttack",
    "RandomSign",
    "Square",
    "StepLL",
    "StepRnd",
    "apgd_checkpoints",
    "as_eps",
    "ascent_step",
    "build_attack",
    "ce_loss",
    "dlr_loss",
    "kurakin_steps",
    "list_attacks",
    "lp_norm",
    "margin_loss",
    "model_mode",
    "project",
    "random_start",
    "square_fraction",
    "square_side",
]
