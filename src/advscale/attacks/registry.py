"""Build attacks by name, as used on the command line and in configs; the one alias table.

Names, norms and argument names follow advscale's spelling; the spellings torchattacks,
Foolbox, ART and AutoAttack users type are accepted too (:data:`ALIASES`).
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any

from torch import nn

from advscale.attacks.apgd import APGD, APGDL2, APGDT, APGDTL2
from advscale.attacks.base import Attack, Norm, canonical_norm
from advscale.attacks.cascade import StrongCascade
from advscale.attacks.fab import FABT, FABTL2
from advscale.attacks.iterative import PGD, PGDL2, IterBasic, IterLL
from advscale.attacks.one_step import FGSM, FastGradientL2, FGSMPred, RandomSign, StepLL, StepRnd
from advscale.attacks.reference import AutoAttack
from advscale.attacks.square import Square, SquareL2
from advscale.errors import UserError

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
    "apgd_l2": APGDL2,
    "apgd_dlr_l2": APGDL2,
    "apgd_t": APGDT,
    "apgd_t_l2": APGDTL2,
    "fab_t": FABT,
    "fab_t_l2": FABTL2,
    "square": Square,
    "square_l2": SquareL2,
    "strong": StrongCascade,
    "autoattack": AutoAttack,
}
# Arguments a registered name implies.
_NAME_KWARGS: dict[str, dict[str, Any]] = {
    "apgd_dlr": {"loss": "dlr"},
    "apgd_dlr_l2": {"loss": "dlr"},
}
ONE_STEP = ("fgsm", "fgsm_pred", "step_ll", "step_rnd", "fgm_l2", "random_sign")
# Iterative counterpart of each one-step attack, for the "one-step stronger than iterative" check.
ITERATIVE_OF = {
    "fgsm": "iter_basic",
    "fgsm_pred": "iter_basic",
    "step_ll": "iter_ll",
    "fgm_l2": "pgd_l2",
}

#: Other libraries' spellings -> advscale's. Attack names and norms are matched case-blind
#: ("-" and " " read as "_"); argument names exactly.
ALIASES: dict[str, dict[Any, str]] = {
    "attack": {
        "bim": "iter_basic",  # torchattacks BIM, Foolbox LinfBasicIterativeAttack
        "i_fgsm": "iter_basic",
        "ifgsm": "iter_basic",
        "iter_l.l.": "iter_ll",
        "step_l.l.": "step_ll",
        "fgm": "fgm_l2",  # Foolbox L2FastGradientAttack, ART FastGradientMethod(norm=2)
        "pgdl2": "pgd_l2",  # torchattacks PGDL2
        "linf_pgd": "pgd",
        "l2_pgd": "pgd_l2",
        "apgdt": "apgd_t",  # torchattacks APGDT
        "fab": "fab_t",  # torchattacks FAB (targeted in AutoAttack's standard version)
        "fabt": "fab_t",
        "aa": "autoattack",
        "auto_attack": "autoattack",
    },
    "norm": {
        "linf": "linf",
        "inf": "linf",
        "l_inf": "linf",
        float("inf"): "linf",
        "l2": "l2",
        "2": "l2",
        2: "l2",
    },
    "argument": {
        "n_restarts": "restarts",  # torchattacks APGD/Square, pyautoattack (accepted by the classes)
        "n_iter": "steps",  # pyautoattack APGD
        "n_classes": "",  # torchattacks APGDT/AutoAttack: read from the model, so ignored
    },
}
NORM_ALIASES: dict[Any, Norm] = ALIASES["norm"]  # type: ignore[assignment]


def canonical_name(name: str) -> str:
    """advscale's registered name for ``name`` (an alias such as "BIM", or "APGD-T")."""
    key = name.strip().lower().replace("-", "_").replace(" ", "_")
    return ALIASES["attack"].get(key, key)


def canonical_kwargs(kwargs: Mapping[str, Any], who: str = "") -> dict[str, Any]:
    """``kwargs`` with other libraries' argument names (``n_iter``, ``n_restarts``) renamed to
    advscale's and the ignored ones (``n_classes``) dropped (:data:`ALIASES`).

    Raises:
        UserError: an argument given under both names with different values.
    """
    out = dict(kwargs)
    for alias, own in ALIASES["argument"].items():
        if alias not in out:
            continue
        value = out.pop(alias)
        if own and own in out and out[own] != value:
            raise UserError(
                f"{who}{alias}={value!r} and {own}={out[own]!r} both given; {alias} is "
                f"another name for {own}: give one"
            )
        if own:
            out[own] = value
    return out


def list_attacks() -> list[str]:
    return sorted(ATTACKS)


def attack_norm(name: str, **kwargs: Any) -> Norm:
    """The norm attack ``name`` measures ε in ("linf" or "l2"), with ``norm=`` if given.

    Example:
        >>> attack_norm("apgd_t_l2"), attack_norm("apgd", norm="L2")
        ('l2', 'l2')
    """
    if kwargs.get("norm") is not None:
        return canonical_norm(kwargs["norm"])
    return ATTACKS[_known(name)].norm


def _known(name: str) -> str:
    key = canonical_name(name)
    if key not in ATTACKS:
        close = difflib.get_close_matches(key, ATTACKS, n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise ValueError(f"unknown attack {name!r}.{hint} Allowed: {', '.join(list_attacks())}")
    return key


def build_attack(name: str, model: nn.Module, eps: float = 8 / 255, **kwargs: Any) -> Attack:
    """Attack ``name`` on ``model`` with budget ``eps`` (in [0, 1] units) and extra arguments.

    ``name``, ``norm`` and argument names may be spelled as in torchattacks or AutoAttack
    (:data:`ALIASES`): ``build_attack("BIM", model, 8/255)``, ``norm="Linf"``, ``n_restarts=2``.

    Example:
        >>> attack = build_attack("pgd", model, eps=8 / 255, steps=10)  # doctest: +SKIP
    """
    key = _known(name)
    kwargs = {**_NAME_KWARGS.get(key, {}), **canonical_kwargs(kwargs)}
    try:
        return ATTACKS[key](model, eps, **kwargs)
    except TypeError as e:
        raise ValueError(f"bad arguments for attack {name!r}: {e}") from None
