"""Label leaking (paper A): a model trained on true-label FGSM examples learns to read the label
off the perturbation, so it is *more* accurate on FGSM examples than on clean ones.

A label is leaked when the adversarial example built with the true label (FGSM) is classified
correctly but the one built without it (FGSM-pred, which uses the model's prediction) is not.
Both attacks build the same example when the clean prediction is right, so leaks show up on the
examples the model gets wrong when clean.

Example:
    >>> rows = label_leak(model, test.take(1000), [2, 4, 8, 16])  # doctest: +SKIP
    >>> any(r["leak"] for r in rows)  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from advscale.evaluate.inputs import Data
from advscale.evaluate.robust import evaluate
from advscale.results import EPS_UNIT

LABEL_LEAK_ATTACKS = ("fgsm", "fgsm_pred", "step_ll")
DEFAULT_LEAK_MARGIN = 0.02


def leak_flag(
    clean: float, fgsm: float, fgsm_pred: float, margin: float = DEFAULT_LEAK_MARGIN
) -> bool:
    """Whether accuracies (in [0, 1]) show label leaking: FGSM accuracy above clean accuracy,
    or above FGSM-pred accuracy by more than ``margin``.

    Example:
        >>> leak_flag(clean=0.80, fgsm=0.86, fgsm_pred=0.40)
        True
        >>> leak_flag(clean=0.90, fgsm=0.30, fgsm_pred=0.29)
        False
    """
    return fgsm > clean or fgsm > fgsm_pred + margin


def label_leak(
    model: nn.Module,
    data: Data,
    eps_list: Sequence[float],
    *,
    margin: float = DEFAULT_LEAK_MARGIN,
    batch_size: int = 500,
    device: str | torch.device | None = None,
    n: int | None = None,
    seed: int = 0,
    progress: bool = False,
) -> list[dict[str, Any]]:
    """Clean accuracy against FGSM, FGSM-pred and step l.l. accuracy at each ε, with leak flags.

    Accuracies are plain accuracies on the final adversarial examples over all examples (as in
    paper A), so they can exceed the clean accuracy.

    Args:
        model: classifier on [0, 1] inputs returning logits.
        data: an ImageDataset, an ``(x, y)`` pair or an iterable of batches, as for
            :func:`evaluate`.
        eps_list: budgets in pixel levels (8 means 8/255), as for :func:`evaluate`.
        margin: FGSM accuracy above FGSM-pred accuracy by more than this is flagged.
        batch_size, device, n, seed, progress: as for :func:`evaluate`.

    Returns:
        One dict per ε: ``eps``, ``eps_unit``, ``n``, ``clean_accuracy``, ``fgsm_accuracy``,
        ``fgsm_pred_accuracy``, ``step_ll_accuracy``, ``leaked`` (share of all examples whose
        label leaked), ``leak`` (:func:`leak_flag`) and ``margin``.
    """
    report = evaluate(
        model,
        data,
        attacks=LABEL_LEAK_ATTACKS,
        eps=eps_list,
        batch_size=batch_size,
        device=device,
        seed=seed,
        progress=progress,
        n=n,
        checks=False,
    )
    rows = []
    for e in report.config["eps"]:
        fgsm = report.final_mask[("fgsm", e)]
        pred = report.final_mask[("fgsm_pred", e)]
        acc = {a: float(report.final_mask[(a, e)].float().mean()) for a in LABEL_LEAK_ATTACKS}
        rows.append(
            {
                "eps": e,
                "eps_unit": EPS_UNIT,
                "n": report.n,
                "clean_accuracy": report.clean_accuracy,
                "fgsm_accuracy": acc["fgsm"],
                "fgsm_pred_accuracy": acc["fgsm_pred"],
                "step_ll_accuracy": acc["step_ll"],
                "leaked": float((fgsm & ~pred).float().mean()),
                "leak": leak_flag(report.clean_accuracy, acc["fgsm"], acc["fgsm_pred"], margin),
                "margin": margin,
            }
        )
    return rows


__all__ = ["DEFAULT_LEAK_MARGIN", "LABEL_LEAK_ATTACKS", "label_leak", "leak_flag"]
