"""Adversarial examples to look at: a few broken examples per attack × ε, saved as safetensors.

:func:`evaluate` (``keep_examples=k``) calls :func:`broken_examples` after measuring: for each
attack and ε it takes up to ``k`` examples the evaluation counted as broken by that attack,
runs the attack again on them alone, and keeps those whose returned adversarial image the model
misclassifies (so every example shown is one the model really gets wrong, found by the attack
named beside it). :func:`save_examples` writes them to one safetensors file that the report
reads with no advscale import (tensors ``x``, ``x_adv``, ``y``, ``pred``, ``attack``, ``eps``,
``index``;
metadata ``attacks``, ``classes``, ``eps_unit`` and ``format`` as JSON strings).

Example:
    >>> report = evaluate(model, test, attacks=["fgsm", "pgd"], eps=[8], keep_examples=8)  # doctest: +SKIP
    >>> save_examples(report.examples, "adv/examples.safetensors", classes=test.classes)  # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from advscale.attacks import model_mode
from advscale.data import to_float
from advscale.evaluate.inputs import attack_seed
from advscale.evaluate.model_checks import Head, build_attack_for
from advscale.evaluate.norms import attack_eps
from advscale.results import EPS_UNIT
from advscale.utils import atomic_write

FORMAT = "advscale.adversarial_examples"
FILE_NAME = "examples.safetensors"
# Candidates re-attacked per attack × ε, as a multiple of k: a random-start attack need not
# break every example on a second run.
OVERSAMPLE = 2


@dataclass
class AdversarialExamples:
    """Broken examples: row i is image ``x[i]`` of true label ``y[i]`` (example ``index[i]`` of
    the evaluated data), turned by attack ``attacks[attack[i]]`` at ``eps[i]`` (pixel levels)
    into ``x_adv[i]``, predicted ``pred[i]``."""

    x: Tensor
    x_adv: Tensor
    y: Tensor
    pred: Tensor
    attack: Tensor
    eps: Tensor
    attacks: list[str]
    index: Tensor

    def __len__(self) -> int:
        return int(self.y.numel())


def broken_examples(
    model: nn.Module,
    images: Tensor,
    labels: Tensor,
    clean_correct: Tensor,
    robust_mask: Mapping[tuple[str, float], Tensor],
    attack_kwargs: Mapping[str, dict[str, Any]],
    k: int,
    *,
    cascade: bool = False,
    device: torch.device | str = "cpu",
    seed: int = 0,
    norm: str = "linf",
    head: Head = "logits",
) -> AdversarialExamples:
    """Up to ``k`` examples per (attack, ε) of ``robust_mask`` that the attack broke.

    Args:
        model: the model the evaluation attacked.
        images, labels: the evaluated examples (float in [0, 1] or uint8; int64).
        clean_correct: (N,) bool, examples classified correctly when clean.
        robust_mask: (attack, ε) -> (N,) bool still-correct masks, in the order the attacks ran
            (with ``cascade``, cumulative over the earlier attacks at that ε).
        attack_kwargs: per-attack arguments the evaluation used.
        k: examples kept per attack × ε.
        norm: the evaluation's norm (ε of ``robust_mask`` in its unit, :mod:`~advscale.evaluate.norms`).
        head: the model's output head (:func:`~advscale.evaluate.model_checks.probe_model`):
            a saturating one is attacked through the same losses as in the evaluation.
    """
    dev = torch.device(device)
    names = list(dict.fromkeys(a for a, _ in robust_mask if a in attack_kwargs))
    fields = ("x", "x_adv", "y", "pred", "attack", "eps", "index")
    keep: dict[str, list[Tensor]] = {f: [] for f in fields}
    before: dict[float, Tensor] = {}
    for (name, e), still in robust_mask.items():
        if name not in attack_kwargs:  # the worst case of all attacks is no attack of its own
            continue
        prior = before.get(e, clean_correct) if cascade else clean_correct
        before[e] = still
        candidates = (prior & ~still).nonzero().squeeze(1)[: OVERSAMPLE * k]
        if k <= 0 or not len(candidates):
            continue
        x = to_float(images[candidates.to(images.device)]).to(dev)
        y = labels[candidates.to(labels.device)].to(dev)
        kwargs = {**attack_kwargs[name], "seed": attack_seed(seed, name, e)}
        attack = build_attack_for(name, model, attack_eps(e, norm), kwargs, head=head)
        x_adv = attack.run(x, y).x_adv.detach()
        with torch.no_grad(), model_mode(model, "eval"):
            pred = model(x_adv).argmax(1)
        hit = (pred != y).nonzero().squeeze(1)[:k]
        keep["x"].append(x[hit].cpu())
        keep["x_adv"].append(x_adv[hit].cpu())
        keep["y"].append(y[hit].cpu())
        keep["pred"].append(pred[hit].cpu())
        keep["attack"].append(torch.full((len(hit),), names.index(name), dtype=torch.int64))
        keep["eps"].append(torch.full((len(hit),), float(e), dtype=torch.float32))
        keep["index"].append(candidates[hit.cpu()].cpu())
    shape = tuple(images.shape[1:])
    empty = {
        "x": torch.zeros((0, *shape)),
        "x_adv": torch.zeros((0, *shape)),
        "y": torch.zeros(0, dtype=torch.int64),
        "pred": torch.zeros(0, dtype=torch.int64),
        "attack": torch.zeros(0, dtype=torch.int64),
        "eps": torch.zeros(0, dtype=torch.float32),
        "index": torch.zeros(0, dtype=torch.int64),
    }
    cat = {f: torch.cat(v) if v else empty[f] for f, v in keep.items()}
    return AdversarialExamples(
        cat["x"].float(),
        cat["x_adv"].float(),
        cat["y"].long(),
        cat["pred"].long(),
        cat["attack"],
        cat["eps"],
        names,
        cat["index"].long(),
    )


def save_examples(
    examples: AdversarialExamples,
    path: str | os.PathLike,
    *,
    classes: Sequence[str] | None = None,
    model: str | None = None,
    eps_unit: str = EPS_UNIT,
) -> Path:
    """Write ``examples`` to the safetensors file ``path`` (atomically); returns the path.

    ``classes`` (names by label index) and ``model`` (the name it is shown under) go into the
    file's metadata, for the report's captions; ``eps_unit`` is the unit of ``eps``
    ("1/255" for L∞ pixel levels, "1" for L2 radii).
    """
    from safetensors.torch import save_file

    tensors = {
        "x": examples.x.contiguous(),
        "x_adv": examples.x_adv.contiguous(),
        "y": examples.y.contiguous(),
        "pred": examples.pred.contiguous(),
        "attack": examples.attack.contiguous(),
        "eps": examples.eps.contiguous(),
        "index": examples.index.contiguous(),
    }
    meta = {
        "format": FORMAT,
        "attacks": json.dumps(list(examples.attacks)),
        "classes": json.dumps(list(classes) if classes is not None else None),
        "eps_unit": eps_unit,
        "model": json.dumps(model),
    }
    return atomic_write(path, lambda p: save_file(tensors, str(p), metadata=meta))


__all__ = ["FILE_NAME", "FORMAT", "AdversarialExamples", "broken_examples", "save_examples"]
