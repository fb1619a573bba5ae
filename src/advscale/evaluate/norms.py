"""Norms of an evaluation: L∞ budgets in pixel levels, L2 radii in [0, 1] units of the image.

One evaluation measures ε in one norm, so its worst case never mixes L∞ and L2 records; every
record says which (``norm``, ``eps_unit``).

Example:
    >>> check_eps([0.25, 0.5], norm="l2"), attack_eps(8, "linf") == 8 / 255
    ([0.25, 0.5], True)
    >>> eps_label(8, "linf"), eps_label(0.5, "l2")
    ('8/255', 'L2 0.5')
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from advscale.attacks import ATTACKS, canonical_norm
from advscale.errors import UserError
from advscale.evaluate.inputs import EpsUnit, check_pixel_eps, eps_floats, show_values, where_prefix

Norm = Literal["linf", "l2"]
#: The unit of ε in records and configs, per norm: L∞ budgets in pixel levels (8 means 8/255),
#: L2 radii in [0, 1] units of the image (as RobustBench: 0.5 on CIFAR-10), never divided by 255.
EPS_UNITS: dict[str, EpsUnit] = {"linf": "1/255", "l2": "1"}


def check_eps(
    values: float | Sequence[float],
    source: str | None = "eps",
    *,
    norm: str = "linf",
    unit: EpsUnit | None = None,
) -> list[float]:
    """ε budgets of an evaluation in ``norm``, in the unit records keep (:data:`EPS_UNITS`).

    L∞: pixel levels, checked by :func:`check_pixel_eps` (``unit`` as there). L2: radii in
    [0, 1] units of the image, finite and >= 0; repeats dropped, order kept.

    Raises:
        UserError: an unknown norm, no value, a negative or non-finite radius.
    """
    if norm == "linf":
        return check_pixel_eps(values, source, unit=unit or "1/255")
    if norm != "l2":
        raise UserError(where_prefix(source) + f"unknown norm {norm!r}; allowed: linf, l2")
    if unit not in (None, "1"):
        raise UserError(
            where_prefix(source) + "L2 eps are radii in [0, 1] units of the image (unit '1')"
        )
    given = eps_floats(values, source)
    if not given:
        raise UserError(where_prefix(source) + "no eps given (L2 radii, e.g. 0.25,0.5)")
    bad = [e for e in given if not (math.isfinite(e) and e >= 0)]
    if bad:
        raise UserError(
            where_prefix(source)
            + f"L2 eps must be finite radii >= 0 in [0, 1] units of the image, "
            f"got {show_values(bad)}"
        )
    return list(dict.fromkeys(given))


def attack_eps(eps: float, norm: str) -> float:
    """A record's ε (:data:`EPS_UNITS` of ``norm``) in the [0, 1] units attacks take."""
    return eps / 255 if norm == "linf" else eps


def eps_label(eps: float, norm: str) -> str:
    """ε as people read it: ``8/255`` (L∞, pixel levels) or ``L2 0.5`` (L2 radius)."""
    return f"{eps:g}/255" if norm == "linf" else f"L2 {eps:g}"


def with_norm(
    kwargs_for: Mapping[str, Mapping[str, Any]], norm: str, source: str | None = "attacks"
) -> dict[str, dict[str, Any]]:
    """Each attack's arguments for an evaluation in ``norm``: one registered for L∞ that can
    measure ε in L2 as well (PGD, APGD, Square, ...) gets ``norm="l2"``.

    Raises:
        UserError: an attack registered for the other norm (``pgd_l2`` in an L∞ evaluation),
            or arguments that set another norm than the evaluation's.
    """
    out = {}
    for name, kw in kwargs_for.items():
        kw = dict(kw)
        own = getattr(ATTACKS[name], "norm", "linf")
        given = kw.get("norm")
        if given is not None and canonical_norm(given) != norm:
            raise UserError(
                where_prefix(source)
                + f"{name!r} is given norm={given!r} but the evaluation's norm "
                f"is {norm!r}; one evaluation measures ε in one norm"
            )
        if own != norm and own != "linf":
            raise UserError(
                where_prefix(source) + f"attack {name!r} measures ε in {own}, this evaluation in "
                f"{norm}: evaluate it with norm {own!r} (--norm {own}), or pick the {norm} attack"
            )
        if own != norm:
            kw["norm"] = norm
        out[name] = kw
    return out


__all__ = ["EPS_UNITS", "Norm", "attack_eps", "check_eps", "eps_label", "with_norm"]
