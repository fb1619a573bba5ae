"""Checks for gradient masking: signs that robust accuracy is inflated by a weak evaluation.

Each check returns a list of warnings, ``{"check": name, "message": what was seen and what it
suggests, ...measured values}``; an empty list means the check passed. The checks follow the
warning signs listed by Athalye et al. (2018) and Croce & Hein (2020):

- ``zero_gradients``: input gradients are exactly zero (or not finite) for many examples.
- ``accuracy_falls_with_eps``: accuracy rises, or does not fall at all, as ε grows.
- ``one_step_vs_iterative``: an untargeted one-step attack beats its iterative version at the
  same ε (``advscale.attacks.ITERATIVE_OF``).
- ``unbounded``: PGD with ε = 255/255, which may produce any image, leaves examples correct.
- ``gradient_free_vs_gradient``: a gradient-free attack (Square, random noise) breaks points
  every gradient attack failed on.
- ``nonfinite_outputs``: the model returned NaN or inf at adversarial examples (counted broken).

The probes of the model itself (probabilities or another saturating head, randomness) are in
:mod:`advscale.evaluate.model_checks`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from advscale.attacks import ITERATIVE_OF, margin_loss, model_mode
from advscale.evaluate.model_checks import SATURATING, Head, attacked_model, build_attack_for

GRADIENT_FREE = ("square", "random_sign")
TARGETED_ITERATIVE = ("iter_ll",)
# Share of examples that may show a symptom before it is reported (sampling noise aside).
DEFAULT_MARGIN = 0.01
ZERO_GRAD_FRACTION = 0.1
UNBOUNDED_MAX_ACCURACY = 0.05


def check_outputs(
    model: nn.Module, x: Tensor, y: Tensor, *, head: Head = "logits"
) -> list[dict[str, Any]]:
    """The ``zero_gradients`` check on a clean batch ``(x, y)``, on what the attacks see of the
    model and with their loss for its output ``head`` (the margin for a saturating one)."""
    warnings: list[dict[str, Any]] = []
    if len(x) == 0:
        return warnings
    grad = None
    with model_mode(model, "eval"), torch.enable_grad():
        xg = x.detach().clone().requires_grad_(True)
        out = attacked_model(model, head)(xg)
        # out needs no grad when the forward detaches its input and has no trainable part
        if out.requires_grad:
            loss = (
                -margin_loss(out.float(), y).sum()
                if head in SATURATING
                else F.cross_entropy(out.float(), y, reduction="sum")
            )
            (grad,) = torch.autograd.grad(loss, xg, allow_unused=True)
    if grad is None:
        dead = torch.ones(len(x), dtype=torch.bool, device=x.device)
    else:
        flat = grad.detach().flatten(1)
        dead = (flat.abs().amax(1) == 0) | ~torch.isfinite(flat).all(1)
    share = float(dead.float().mean())
    if share >= ZERO_GRAD_FRACTION:
        warnings.append(
            {
                "check": "zero_gradients",
                "message": (
                    f"input gradients of the loss are zero or not finite for {share:.0%} of {len(x)} "
                    "clean examples: gradient attacks get no signal there (quantization, "
                    "non-differentiable preprocessing, detached inputs or saturated outputs), so "
                    "their robust accuracy is not trustworthy; check with a gradient-free attack "
                    "(square) or attack a differentiable approximation of the model"
                ),
                "share": share,
            }
        )
    return warnings


def check_unbounded(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    seed: int = 0,
    steps: int = 20,
    max_accuracy: float = UNBOUNDED_MAX_ACCURACY,
    head: Head = "logits",
) -> list[dict[str, Any]]:
    """The ``unbounded`` check: PGD at ε = 255/255 on clean-correct examples ``(x, y)``."""
    if len(x) == 0:
        return []
    pgd = build_attack_for("pgd", model, 1.0, {"steps": steps, "seed": seed}, head=head)
    res = pgd.run(x, y)
    with torch.no_grad(), model_mode(model, "eval"):
        out = model(res.x_adv)
        still = (out.argmax(1) == y) & torch.isfinite(out).all(1) & ~res.fooled
    acc = float(still.float().mean())
    if acc <= max_accuracy:
        return []
    return [
        {
            "check": "unbounded",
            "message": (
                f"PGD-{steps} with eps = 255/255, which may produce any image, leaves {acc:.1%} of "
                f"{len(x)} clean-correct examples correctly classified; an unbounded attack should "
                "reach ~0%, so the gradients do not lead the attack (gradient masking) and robust "
                "accuracy at small eps is not trustworthy"
            ),
            "eps": 255.0,
            "accuracy": acc,
        }
    ]


def check_records(
    records: Sequence[dict[str, Any]],
    robust_mask: dict[tuple[str, float], Tensor],
    clean_mask: Tensor,
    *,
    attacks: Sequence[str],
    cascade: bool,
    margin: float = DEFAULT_MARGIN,
) -> list[dict[str, Any]]:
    """The checks on measured accuracies: ε monotonicity, one-step vs iterative, gradient-free."""
    n = int(clean_mask.numel())
    tol = max(margin, 2 / n) if n else margin  # two examples' worth, at least
    return (
        _check_eps_trend(records, tol)
        + ([] if cascade else _check_one_step(records, tol))
        + _check_gradient_free(records, robust_mask, clean_mask, attacks, cascade, tol)
    )


def check_nonfinite(records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The ``nonfinite_outputs`` finding: attacks whose returned examples got NaN or inf outputs."""
    u = _unit(records)
    warnings = []
    for r in records:
        k = int(r.get("nonfinite") or 0)
        if k and r["attack"] != "worst_case":
            warnings.append(
                {
                    "check": "nonfinite_outputs",
                    "attack": r["attack"],
                    "eps": r["eps"],
                    "count": k,
                    "message": (
                        f"{r['attack']} at {r['eps']:g}{u}: the model returned NaN or inf for {k} "
                        "adversarial examples; they count as broken, not robust. A model that "
                        "breaks down off the data is not a robust one: check its numerics "
                        "(divisions, logs, exp) on inputs near the data"
                    ),
                }
            )
    return warnings


def _unit(records: Sequence[dict[str, Any]]) -> str:
    """How the records' ε reads in a message: "/255" (L∞ pixel levels) or " (L2)" radii."""
    norm = next((r.get("norm") for r in records if r.get("norm")), "linf")
    return "/255" if norm == "linf" else f" ({str(norm).upper()})"


def _by_attack(records: Sequence[dict[str, Any]]) -> dict[str, dict[float, float]]:
    acc: dict[str, dict[float, float]] = {}
    for r in records:
        acc.setdefault(r["attack"], {})[float(r["eps"])] = float(r["accuracy"])
    return acc


def _eps_warning(
    name: str, lo: float, hi: float, by_eps: dict[float, float], message: str
) -> dict[str, Any]:
    return {
        "check": "accuracy_falls_with_eps",
        "attack": name,
        "eps": [lo, hi],
        "accuracy": [by_eps[lo], by_eps[hi]],
        "message": message,
    }


def _check_eps_trend(records: Sequence[dict[str, Any]], tol: float) -> list[dict[str, Any]]:
    u = _unit(records)
    warnings = []
    for name, by_eps in _by_attack(records).items():
        eps = sorted(by_eps)
        rise = next(
            (
                (lo, hi)
                for i, lo in enumerate(eps)
                for hi in eps[i + 1 :]
                if by_eps[hi] > by_eps[lo] + tol
            ),
            None,
        )
        if rise is not None:
            lo, hi = rise
            warnings.append(
                _eps_warning(
                    name,
                    lo,
                    hi,
                    by_eps,
                    f"{name}: accuracy rises from {by_eps[lo]:.1%} at {lo:g}{u} to "
                    f"{by_eps[hi]:.1%} at {hi:g}{u}; a larger budget contains every smaller "
                    "one, so a working attack cannot do worse: a sign of gradient masking or of "
                    "an attack that overshoots (one-step attacks, label leaking)",
                )
            )
            continue
        pos = [e for e in eps if e > 0]
        if len(pos) >= 2 and pos[-1] >= 2 * pos[0]:
            lo, hi = pos[0], pos[-1]
            if by_eps[hi] > tol and by_eps[hi] >= by_eps[lo] - tol:
                warnings.append(
                    _eps_warning(
                        name,
                        lo,
                        hi,
                        by_eps,
                        f"{name}: accuracy "
                        + (
                            "does not fall"
                            if by_eps[hi] >= by_eps[lo]
                            else f"falls by no more than the {tol:.1%} tolerance"
                        )
                        + f" from {lo:g}{u} ({by_eps[lo]:.1%}) to "
                        f"{hi:g}{u} ({by_eps[hi]:.1%}) although the budget grew "
                        f"{hi / lo:g}-fold: the attack is not finding its way (gradient masking "
                        "or too few steps)",
                    )
                )
    return warnings


def _one_step_pairs(attacks: Sequence[str]) -> list[tuple[str, str]]:
    # Iter. l.l. aims at the least-likely class, a harder goal than leaving the true one, so it
    # can leave more points correct than step l.l. on a sound model (a clean-trained small_cnn
    # on Fashion-MNIST: 65% against 59% at 8/255); only untargeted pairs are compared.
    return [
        (one, it)
        for one, it in ITERATIVE_OF.items()
        if one in attacks and it in attacks and it not in TARGETED_ITERATIVE
    ]


def applicable_record_checks(attacks: Sequence[str], cascade: bool) -> list[str]:
    """Names of the checks :func:`check_records` can make for this list of attacks."""
    names = ["accuracy_falls_with_eps"]
    if not cascade and _one_step_pairs(attacks):
        names.append("one_step_vs_iterative")
    if any(a in GRADIENT_FREE for a in attacks) and any(a not in GRADIENT_FREE for a in attacks):
        names.append("gradient_free_vs_gradient")
    return names


def _check_one_step(records: Sequence[dict[str, Any]], tol: float) -> list[dict[str, Any]]:
    u = _unit(records)
    acc = _by_attack(records)
    warnings = []
    for one, it in _one_step_pairs(list(acc)):
        for e in sorted(set(acc[one]) & set(acc[it])):
            if acc[one][e] < acc[it][e] - tol:
                warnings.append(
                    {
                        "check": "one_step_vs_iterative",
                        "attack": one,
                        "iterative": it,
                        "eps": e,
                        "accuracy": [acc[one][e], acc[it][e]],
                        "message": (
                            f"{one} leaves {acc[one][e]:.1%} accuracy at {e:g}{u} but its iterative "
                            f"version {it} leaves {acc[it][e]:.1%}: more steps of the same attack "
                            "should not do worse, a sign of gradient masking (a jagged loss surface "
                            "that traps small steps) or of a badly tuned iterative attack"
                        ),
                    }
                )
    return warnings


def _check_gradient_free(
    records: Sequence[dict[str, Any]],
    robust_mask: dict[tuple[str, float], Tensor],
    clean_mask: Tensor,
    attacks: Sequence[str],
    cascade: bool,
    tol: float,
) -> list[dict[str, Any]]:
    u = _unit(records)
    free = [a for a in attacks if a in GRADIENT_FREE]
    grad = [a for a in attacks if a not in GRADIENT_FREE]
    if not free or not grad:
        return []
    n = int(clean_mask.numel())
    warnings = []
    for e in sorted({float(r["eps"]) for r in records}):
        for g in free:
            if cascade:
                # With a cascade the masks are cumulative: the gradient-free attack must come
                # after every gradient attack to tell what it alone found.
                pos = list(attacks).index(g)
                if any(list(attacks).index(a) > pos for a in grad):
                    continue
                before = robust_mask[(attacks[pos - 1], e)] if pos > 0 else clean_mask
                only = before & ~robust_mask[(g, e)]
            else:
                robust_all_grad = clean_mask.clone()
                for a in grad:
                    robust_all_grad &= robust_mask[(a, e)]
                only = robust_all_grad & ~robust_mask[(g, e)]
            share = float(only.float().sum()) / max(n, 1)
            if share > tol:
                warnings.append(
                    {
                        "check": "gradient_free_vs_gradient",
                        "attack": g,
                        "eps": e,
                        "share": share,
                        "message": (
                            f"{g} (no gradients) broke {share:.1%} of the examples at {e:g}{u} that "
                            f"every gradient attack ({', '.join(grad)}) failed on: the gradients "
                            "mislead the attacks (gradient masking), so trust the worst case over all "
                            "attacks, not the gradient attacks alone"
                        ),
                    }
                )
    return warnings


__all__ = [
    "GRADIENT_FREE",
    "applicable_record_checks",
    "check_outputs",
    "check_nonfinite",
    "check_records",
    "check_unbounded",
]
