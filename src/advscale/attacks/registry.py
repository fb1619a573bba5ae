"""Build attacks by name, as used on the command line and in configs."""

from __future__ import annotations

from typing import Any

from torch import nn

from advscale.attacks.apgd import APGD, APGDT
from advscale.attacks.base import Attack
from advscale.attacks.iterative import PGD, PGDL2, IterBasic, IterLL
from advscale.attacks.one_step import FGSM, FastGradientL2, FGSMPred, RandomSign, StepLL, StepRnd
from advscale.attacks.square import Square

ATTACKS: dict[str, type[Attack]] = {
    "fgsm": FGSM,
    "fgsm_pred": FGSMPred,
    "step_ll": StepLL,
    "step_rnd": StepRnd,
    "fgm_l2": FastGradientL2,
    "random_sign": RandomSign,
    "iter_basic": IterBasic,
    "iter_ll": IterLL,
    "pgd": PGD,
    "pgd_l2": PGDL2,
    "apgd": APGD,
    "apgd_ce": APGD,
    "apgd_dlr": APGD,
    "apgd_t": APGDT,
    "square": Square,
}
ONE_STEP = ("fgsm", "fgsm_pred", "step_ll", "step_rnd", "fgm_l2", "random_sign")
# Iterative counterpart of each one-step attack, for the "one-step stronger than iterative" check.
ITERATIVE_OF = {
    "fgsm": "iter_basic",
    "fgsm_pred": "iter_basic",
    "step_ll": "iter_ll",
    "fgm_l2": "pgd_l2",
}


def list_attacks() -> list[str]:
    return sorted(ATTACKS)


def build_attack(name: str, model: nn.Module, eps: float = 8 / 255, **kwargs: Any) -> Attack:
    """Attack ``name`` on ``model`` with budget ``eps`` (in [0, 1] units) and extra arguments.

    Example:
        >>> attack = build_attack("pgd", model, eps=8 / 255, steps=10)  # doctest: +SKIP
    """
    if name not in ATTACKS:
        import difflib

        close = difflib.get_close_matches(name, ATTACKS, n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise ValueError(f"unknown attack {name!r}.{hint} Allowed: {', '.join(list_attacks())}")
    if name == "apgd_dlr":
        kwargs.setdefault("loss", "dlr")
    try:
        return ATTACKS[name](model, eps, **kwargs)
    except TypeError as e:
        raise ValueError(f"bad arguments for attack {name!r}: {e}") from None
