"""Label leaking (paper A), diagnosed against label-free controls.

A model trained on true-label FGSM examples can learn to read the label off the perturbation:
it then classifies the true-label one-step example correctly more often than it would any
perturbation of the same size that carries no label. That comparison is the test here. FGSM
accuracy above *clean* accuracy is not evidence of it on its own: a model trained only on
heavily perturbed inputs is more accurate on any large perturbation (random sign noise
included) than on clean images. That is reported as its own finding, ``prefers_perturbed``.

At each ε every example is attacked with FGSM (true label) and with each control (by default
FGSM-pred, step l.l., step rnd and random sign noise: none uses the true label), and
the two are compared on the same examples with an exact one-sided McNemar test:

- ``leak``: FGSM is right more often than EVERY control, each with p < ``alpha`` and an
  accuracy difference of at least ``min_effect`` (an intersection-union test: its level is
  ``alpha`` without correction);
- ``prefers_perturbed``: SOME control is right more often than the clean image, with
  p < ``alpha`` / (number of controls) (Bonferroni) and a difference of at least ``min_effect``.

Each ε is tested at level ``alpha``; over k budgets a model that does neither is flagged at
some ε with probability at most k·``alpha``.

Example:
    >>> rows = label_leak(model, test.take(1000), [8, 16, 32, 64])  # doctest: +SKIP
    >>> label_leak_summary(rows)  # doctest: +SKIP
    {'label_leak': False, 'prefers_perturbed': True, 'label_leak_eps': [], ...}
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from statistics import NormalDist
from typing import Any

import torch
from torch import Tensor, nn

from advscale.errors import UserError
from advscale.evaluate.inputs import Data
from advscale.evaluate.robust import evaluate
from advscale.results import EPS_UNIT

LEAK_ATTACK = "fgsm"
LEAK_CONTROLS = ("fgsm_pred", "step_ll", "step_rnd", "random_sign")
LABEL_LEAK_ATTACKS = (LEAK_ATTACK, *LEAK_CONTROLS)
# One-step attacks that never see the true label (fgm_l2, like FGSM, uses it).
LABEL_FREE = LEAK_CONTROLS
DEFAULT_ALPHA = 0.01
DEFAULT_MIN_EFFECT = 0.01
DEFAULT_CONFIDENCE = 0.95


def mcnemar_one_sided(a_only: int, b_only: int) -> float:
    """Exact one-sided McNemar p-value for "A is right more often than B" on paired examples.

    ``a_only`` counts the examples only A gets right, ``b_only`` those only B gets right; under
    the null hypothesis each discordant pair is A's with probability 1/2, so the p-value is
    P(Binomial(a_only + b_only, 1/2) >= a_only). Exact for any count (integer arithmetic).

    Example:
        >>> round(mcnemar_one_sided(9, 1), 4)
        0.0107
        >>> mcnemar_one_sided(0, 0)
        1.0
    """
    if a_only < 0 or b_only < 0:
        raise ValueError(f"discordant counts must be >= 0, got {a_only} and {b_only}")
    n = a_only + b_only
    term = 1  # C(n, k), built up from k = n downwards
    tail = 0
    for k in range(n, a_only - 1, -1):
        tail += term
        term = term * k // (n - k + 1)
    return tail / 2**n  # int / int rounds correctly at any size


def paired_difference(
    a: Tensor, b: Tensor, confidence: float = DEFAULT_CONFIDENCE
) -> dict[str, float | int]:
    """Compare two (N,) bool masks of correct answers on the same examples.

    Returns ``a_accuracy``, ``b_accuracy``, ``diff`` (a - b, in [-1, 1]), ``ci_low``/``ci_high``
    (two-sided ``confidence`` interval of the difference: Agresti-Min adjusted Wald interval for
    matched proportions, 0.5 added to each cell of the 2x2 table), ``a_only``/``b_only`` (the
    discordant counts) and ``p_value`` (:func:`mcnemar_one_sided`, alternative a > b).
    """
    if a.shape != b.shape or a.dim() != 1 or len(a) == 0:
        raise ValueError(f"need two non-empty (N,) masks of one shape, got {a.shape}, {b.shape}")
    n = len(a)
    a_only = int((a & ~b).sum())
    b_only = int((~a & b).sum())
    bs, cs, ns = a_only + 0.5, b_only + 0.5, n + 2
    centre = (bs - cs) / ns
    half = NormalDist().inv_cdf(0.5 + confidence / 2) * math.sqrt(bs + cs - (bs - cs) ** 2 / ns)
    half /= ns
    return {
        "a_accuracy": _share(a),
        "b_accuracy": _share(b),
        "diff": (a_only - b_only) / n,
        "ci_low": max(centre - half, -1.0),
        "ci_high": min(centre + half, 1.0),
        "a_only": a_only,
        "b_only": b_only,
        "p_value": mcnemar_one_sided(a_only, b_only),
    }


def _share(mask: Tensor) -> float:
    # Exact count / n (a float32 mean would not match the discordant counts to the last digit).
    return int(mask.sum()) / len(mask)


def leak_flag(
    tests: Mapping[str, Mapping[str, Any]],
    *,
    alpha: float = DEFAULT_ALPHA,
    min_effect: float = DEFAULT_MIN_EFFECT,
) -> bool:
    """Whether FGSM-against-control comparisons show label leaking: FGSM measurably more
    accurate than EVERY control (p < ``alpha`` and ``diff`` >= ``min_effect`` for each).

    ``tests`` maps control names to :func:`paired_difference` results with FGSM as ``a``.
    No controls, no leak: without a label-free reference there is nothing to attribute to the
    label.

    Example:
        >>> leak_flag({"fgsm_pred": {"p_value": 0.001, "diff": 0.05}})
        True
        >>> leak_flag({"fgsm_pred": {"p_value": 0.001, "diff": 0.05},
        ...            "random_sign": {"p_value": 0.9, "diff": -0.04}})
        False
    """
    return bool(tests) and all(_passes(t, alpha, min_effect) for t in tests.values())


def prefers_perturbed_flag(
    tests: Mapping[str, Mapping[str, Any]],
    *,
    alpha: float = DEFAULT_ALPHA,
    min_effect: float = DEFAULT_MIN_EFFECT,
) -> bool:
    """Whether some label-free perturbation is measurably more accurate than the clean image
    (p < ``alpha`` / number of tests, Bonferroni, and ``diff`` >= ``min_effect``).

    ``tests`` maps perturbation names to :func:`paired_difference` results with the perturbed
    examples as ``a`` and the clean ones as ``b``.
    """
    return any(_passes(t, alpha / max(len(tests), 1), min_effect) for t in tests.values())


def _passes(test: Mapping[str, Any], alpha: float, min_effect: float) -> bool:
    return test["p_value"] < alpha and test["diff"] >= min_effect


def label_leak(
    model: nn.Module,
    data: Data,
    eps_list: Sequence[float],
    *,
    controls: Sequence[str] = LEAK_CONTROLS,
    alpha: float = DEFAULT_ALPHA,
    min_effect: float = DEFAULT_MIN_EFFECT,
    confidence: float = DEFAULT_CONFIDENCE,
    batch_size: int = 500,
    device: str | torch.device | None = None,
    n: int | None = None,
    seed: int = 0,
    progress: bool = False,
) -> list[dict[str, Any]]:
    """Test for label leaking at each ε against label-free controls (see the module docstring).

    Accuracies are plain accuracies on the returned examples of all examples (as in paper A),
    so they can exceed the clean accuracy.

    Args:
        model: classifier on [0, 1] inputs returning logits.
        data: an ImageDataset, an ``(x, y)`` pair or an iterable of batches, as for
            :func:`evaluate`.
        eps_list: budgets in pixel levels (8 means 8/255), as for :func:`evaluate`.
        controls: one-step attacks that do not use the true label, compared with FGSM.
        alpha: level of each one-sided test.
        min_effect: smallest accuracy difference (in [0, 1]; 0.01 is one point) flagged.
        confidence: level of the two-sided intervals of the differences.
        batch_size, device, n, seed, progress: as for :func:`evaluate`.

    Returns:
        One flat dict per ε: ``eps``, ``eps_unit``, ``n``, ``clean_accuracy``,
        ``<attack>_accuracy`` for FGSM and each control, ``leaked`` (share of all examples FGSM
        gets right and FGSM-pred wrong, paper A's count; 0 without that control), ``leak``
        (:func:`leak_flag`), ``prefers_perturbed`` (:func:`prefers_perturbed_flag`),
        ``leak_p_value`` (the largest p over the controls: the p-value of the leak test),
        ``leak_effect`` (the smallest FGSM-minus-control difference), ``prefers_perturbed_p_value``
        (the smallest p, Bonferroni-adjusted), ``alpha``, ``min_effect``, ``confidence``,
        ``leak_tests`` (control -> FGSM vs control, :func:`paired_difference`) and
        ``perturbed_tests`` (control -> control vs clean).

    Raises:
        UserError: a control that is unknown, not one-step, or FGSM itself; a bad level.
    """
    controls = _check(controls, alpha, min_effect, confidence)
    report = evaluate(
        model,
        data,
        attacks=[LEAK_ATTACK, *controls],
        eps=eps_list,
        batch_size=batch_size,
        device=device,
        seed=seed,
        progress=progress,
        n=n,
        checks=False,
    )
    clean = report.clean_mask.cpu()
    rows = []
    for e in report.config["eps"]:
        masks = {a: report.final_mask[(a, e)].cpu() for a in (LEAK_ATTACK, *controls)}
        fgsm = masks[LEAK_ATTACK]
        leak_tests = {c: paired_difference(fgsm, masks[c], confidence) for c in controls}
        perturbed_tests = {c: paired_difference(masks[c], clean, confidence) for c in controls}
        pred = masks.get("fgsm_pred")
        rows.append(
            {
                "eps": e,
                "eps_unit": EPS_UNIT,
                "n": report.n,
                "clean_accuracy": _share(clean),
                **{f"{a}_accuracy": _share(m) for a, m in masks.items()},
                "leaked": _share(fgsm & ~pred) if pred is not None else 0.0,
                "leak": leak_flag(leak_tests, alpha=alpha, min_effect=min_effect),
                "prefers_perturbed": prefers_perturbed_flag(
                    perturbed_tests, alpha=alpha, min_effect=min_effect
                ),
                "leak_p_value": max(t["p_value"] for t in leak_tests.values()),
                "leak_effect": min(t["diff"] for t in leak_tests.values()),
                "prefers_perturbed_p_value": min(
                    1.0, len(controls) * min(t["p_value"] for t in perturbed_tests.values())
                ),
                "alpha": alpha,
                "min_effect": min_effect,
                "confidence": confidence,
                "leak_tests": leak_tests,
                "perturbed_tests": perturbed_tests,
            }
        )
    return rows


def label_leak_summary(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The two findings over the rows of :func:`label_leak`: ``label_leak`` and
    ``prefers_perturbed`` (found at any ε), and the ε at which each was found
    (``label_leak_eps``, ``prefers_perturbed_eps``)."""
    leak_eps = [r["eps"] for r in rows if r["leak"]]
    pert_eps = [r["eps"] for r in rows if r["prefers_perturbed"]]
    return {
        "label_leak": bool(leak_eps),
        "prefers_perturbed": bool(pert_eps),
        "label_leak_eps": leak_eps,
        "prefers_perturbed_eps": pert_eps,
    }


def _check(
    controls: Sequence[str], alpha: float, min_effect: float, confidence: float
) -> list[str]:
    out = list(dict.fromkeys(controls))
    if not out:
        raise UserError("label_leak: controls is empty; give at least one label-free attack")
    bad = [c for c in out if c not in LABEL_FREE]
    if bad:
        raise UserError(
            f"label_leak: controls {bad} are not label-free one-step attacks; "
            f"allowed: {', '.join(LABEL_FREE)}"
        )
    if not 0 < alpha < 1 or not 0 < confidence < 1:
        raise UserError(f"label_leak: alpha {alpha} and confidence {confidence} must be in (0, 1)")
    if not 0 <= min_effect <= 1:
        raise UserError(f"label_leak: min_effect {min_effect} must be in [0, 1]")
    return out


__all__ = [
    "DEFAULT_ALPHA",
    "DEFAULT_CONFIDENCE",
    "DEFAULT_MIN_EFFECT",
    "LABEL_FREE",
    "LABEL_LEAK_ATTACKS",
    "LEAK_ATTACK",
    "LEAK_CONTROLS",
    "label_leak",
    "label_leak_summary",
    "leak_flag",
    "mcnemar_one_sided",
    "paired_difference",
    "prefers_perturbed_flag",
]
