"""Transferability of adversarial examples between models (paper A, Section 4.3).

For every source model, attack and ε the adversarial examples are generated once, with the
full number of iterations (no early stop, as in paper A), and shown to every target model.

- ``transfer_rate``: of the examples the source classifies correctly when clean and
  incorrectly when attacked (the *candidates*), the share the target also misclassifies.
- ``error_rate``: the target's plain error rate on all the adversarial examples of the source.

Example:
    >>> res = transfer_matrix({"a": model_a, "b": model_b}, test.take(1000),
    ...                       attacks=["fgsm", "iter_ll"], eps=[4, 16])  # doctest: +SKIP
    >>> res.select(source="a", target="b", attack="fgsm", eps=16.0)[0]["transfer_rate"]  # doctest: +SKIP
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from advscale.attacks import build_attack, model_mode
from advscale.data import to_float
from advscale.errors import UserError
from advscale.evaluate.inputs import (
    Data,
    as_tensors,
    attack_seed,
    check_attacks,
    check_pixel_eps,
    classify,
    merge_attack_kwargs,
    models_to_attack,
    to_device,
)
from advscale.models.checkpoint import checkpoint_name
from advscale.results import EPS_UNIT, Results
from advscale.utils import environment_info, resolve_device


def _num_classes(models: Mapping[str, nn.Module], x: Tensor) -> int:
    """The common number of outputs; a clear error naming the models when they differ."""
    counts = {}
    with torch.no_grad():
        for name, m in models.items():
            with model_mode(m, "eval"):
                out = m(x)
            if out.ndim != 2:
                raise UserError(
                    f"model {name!r} must return (N, classes) scores, got shape {tuple(out.shape)}"
                )
            counts[name] = out.shape[1]
    if len(set(counts.values())) > 1:
        listed = ", ".join(f"{n}: {k}" for n, k in counts.items())
        raise UserError(
            f"models have different numbers of classes ({listed}); adversarial examples transfer "
            "only between models of the same task"
        )
    return next(iter(counts.values()))


def _wrong(
    model: nn.Module, images: Tensor, labels: Tensor, batch_size: int, dev: torch.device, what: str
) -> Tensor:
    """(N,) bool on CPU: ``model`` misclassifies the example (images float in [0, 1] or uint8)."""
    return ~classify(model, images, labels, batch_size, dev, what=what).correct


def _generate(
    model: nn.Module,
    attack: str,
    eps_level: float,
    kwargs: dict[str, Any],
    images: Tensor,
    labels: Tensor,
    batch_size: int,
    dev: torch.device,
    seed: int,
) -> Tensor:
    """Adversarial examples (float, CPU) for every example, final iterates (no early stop)."""
    try:
        atk = build_attack(attack, model, eps_level / 255, early_stop=False, seed=seed, **kwargs)
    except ValueError as e:
        raise UserError(str(e)) from None
    out = []
    for i in range(0, len(labels), batch_size):
        x, y = to_device(images[i : i + batch_size], labels[i : i + batch_size], dev)
        out.append(atk(x, y).detach().cpu())
    return torch.cat(out)


def _rate(hits: Tensor, among: Tensor) -> float | None:
    k = int(among.sum())
    return float((hits & among).sum()) / k if k else None


def transfer_matrix(
    models: Mapping[str, nn.Module],
    data: Data,
    attacks: Sequence[str],
    eps: float | Sequence[float],
    *,
    n: int | None = None,
    batch_size: int = 500,
    attack_kwargs: Mapping[str, dict[str, Any]] | None = None,
    device: str | torch.device | None = None,
    seed: int = 0,
    progress: bool = False,
    on_source_done: Any = None,
    fuse: bool = True,
) -> Results:
    """Transfer rates for every source × target × attack × ε.

    Args:
        models: name -> classifier on [0, 1] inputs returning logits; all with the same classes.
        data: an ImageDataset (a stratified subset of ``n`` is taken), an ``(x, y)`` pair or an
            iterable of such batches, as for ``evaluate``.
        attacks: attack names (``advscale.attacks.ATTACKS``).
        eps: budgets in pixel levels on the 0-255 scale (8 means 8/255), as for ``evaluate``.
        n: number of examples.
        batch_size: examples per attack call.
        attack_kwargs: per-attack overrides of the evaluation defaults (PGD 10 steps...).
        device: where to run (default: CUDA when available).
        seed: seeds the attacks' random generators.
        progress: print a line per source, attack and ε to stderr.
        on_source_done: called with the partial Results (complete=False) after each source.
        fuse: attack and check frozen copies with batch norm folded, as ``evaluate`` does
            (:func:`advscale.models.fuse_for_eval`); off when an attack keeps the model's mode.
            The config's ``fused`` and ``folded_batchnorm`` say, per model, whether a copy was
            used and how many batch norm layers it folded.

    Returns:
        ``Results(kind="transfer_matrix")``: one record per (source, target, attack, ε) with
        ``transfer_rate`` (None when the source fooled no example), ``error_rate``,
        ``candidates`` and ``transferred`` counts, ``source_clean_accuracy`` and
        ``target_clean_accuracy``; the summary holds the mean off-diagonal transfer rate per
        attack and ε and the generation time per source.

    Raises:
        UserError: fewer than one model, unknown attack, bad ε, models with different numbers
            of classes, labels outside the models' classes.
    """
    if not models:
        raise UserError("transfer_matrix needs at least one model")
    attacks = check_attacks(attacks)
    eps_levels = check_pixel_eps(eps)
    if batch_size < 1:
        raise UserError(f"batch_size must be >= 1, got {batch_size}")
    unknown = [a for a in (attack_kwargs or {}) if a not in attacks]
    if unknown:
        raise UserError(f"attack_kwargs for attack(s) not run: {', '.join(unknown)}")
    # Examples are generated to the last iterate: early_stop is not the caller's to change.
    kwargs_for = merge_attack_kwargs(attacks, attack_kwargs, reserved=("eps", "seed", "early_stop"))
    images, labels = as_tensors(data, n)
    dev = resolve_device(device)
    for m in models.values():
        m.to(dev)
    k = _num_classes(models, to_float(images[:2].to(dev)))
    used = models_to_attack(list(models.values()), images, kwargs_for, dev, fuse=fuse)
    fused = {name: u is not m for (name, m), u in zip(models.items(), used, strict=True)}
    models = dict(zip(models, used, strict=True))
    folded = {
        name: int(getattr(m, "folded", 0)) if fused[name] else 0 for name, m in models.items()
    }

    clean_wrong = {
        name: _wrong(m, images, labels, batch_size, dev, "clean") for name, m in models.items()
    }
    res = Results(
        "transfer_matrix",
        config={
            "models": list(models),
            "attacks": list(attacks),
            "eps": eps_levels,
            "eps_unit": EPS_UNIT,
            "n": len(labels),
            "num_classes": k,
            "batch_size": batch_size,
            "seed": seed,
            "early_stop": False,
            "fused": fused,
            "folded_batchnorm": folded,
            "attack_kwargs": kwargs_for,
        },
        environment=environment_info(dev),
        complete=False,
    )
    generation: dict[str, float] = {}
    for src, src_model in models.items():
        t_src = 0.0
        for attack in attacks:
            for e in eps_levels:
                if progress:
                    print(f"transfer-matrix: {src} {attack} ε={e:g}/255", file=sys.stderr)
                t0 = time.perf_counter()
                x_adv = _generate(
                    src_model,
                    attack,
                    e,
                    kwargs_for[attack],
                    images,
                    labels,
                    batch_size,
                    dev,
                    attack_seed(seed, attack, e, scope=src),
                )
                t_src += time.perf_counter() - t0
                adv = f"{src}'s {attack} ε={e:g}/255 adversarial"
                src_adv_wrong = _wrong(src_model, x_adv, labels, batch_size, dev, adv)
                candidates = ~clean_wrong[src] & src_adv_wrong
                for tgt, tgt_model in models.items():
                    tgt_wrong = (
                        src_adv_wrong
                        if tgt == src
                        else _wrong(tgt_model, x_adv, labels, batch_size, dev, adv)
                    )
                    res.add(
                        source=src,
                        target=tgt,
                        attack=attack,
                        eps=e,
                        eps_unit=EPS_UNIT,
                        n=len(labels),
                        candidates=int(candidates.sum()),
                        transferred=int((candidates & tgt_wrong).sum()),
                        transfer_rate=_rate(tgt_wrong, candidates),
                        error_rate=float(tgt_wrong.float().mean()),
                        source_clean_accuracy=1 - float(clean_wrong[src].float().mean()),
                        target_clean_accuracy=1 - float(clean_wrong[tgt].float().mean()),
                    )
        generation[src] = t_src
        res.summary = _summary(res.records, generation)
        if on_source_done is not None:
            on_source_done(res)
    res.complete = True
    return res


def _summary(records: list[dict[str, Any]], generation: dict[str, float]) -> dict[str, Any]:
    """Mean off-diagonal transfer rate per attack and ε (over pairs with candidates)."""
    mean: dict[str, dict[str, float | None]] = {}
    for r in records:
        mean.setdefault(r["attack"], {}).setdefault(f"{r['eps']:g}", None)
    for attack, per_eps in mean.items():
        for e in per_eps:
            rates = [
                r["transfer_rate"]
                for r in records
                if r["attack"] == attack
                and f"{r['eps']:g}" == e
                and r["source"] != r["target"]
                and r["transfer_rate"] is not None
            ]
            per_eps[e] = sum(rates) / len(rates) if rates else None
    return {"mean_transfer_rate": mean, "generation_seconds": generation}


def _model_names(specs: Sequence[str]) -> list[str]:
    """Short unique names: the fewest trailing path parts that tell the checkpoints apart.

    ``runs/a/baseline/model`` and ``runs/a/kurakin/model`` become "baseline" and "kurakin"
    (:func:`advscale.models.checkpoint.checkpoint_name`).
    """
    depth = max(len(Path(str(s)).parts) for s in specs)
    for k in range(1, depth + 1):
        names = [checkpoint_name(str(s), parts=k) for s in specs]
        if len(set(names)) == len(names):
            return names
    return [str(s) for s in specs]


def transfer_matrix_from_specs(
    specs: Sequence[str],
    attacks: Sequence[str],
    eps: Sequence[float],
    *,
    data: str = "fashion-mnist",
    data_dir: str | os.PathLike | None = None,
    n: int | None = 1000,
    device: str | torch.device = "auto",
    fuse: bool = True,
    save_to: str | os.PathLike | None = None,
    progress: bool = True,
) -> Results:
    """The transfer matrix of the models named by ``specs`` (checkpoints or any form
    :func:`advscale.models.load_any_model` reads) on ``n`` test examples of ``data``.

    Models are named by the fewest trailing path parts that tell them apart. With ``save_to``
    the results file is written there after every source model (and at the end), so an
    interrupted run keeps what it measured.

    Raises:
        UserError: fewer than two models, bad ``n``, unreadable models or data.
    """
    from advscale.data import check_class_order, load_dataset
    from advscale.models import load_any_model, model_classes

    if len(specs) < 2:
        raise UserError(f"at least two models are needed to measure transfer, got {list(specs)}")
    if n is not None and n <= 0:
        raise UserError(f"n must be a positive number of examples, got {n}")
    dev = resolve_device(device)
    names = _model_names(specs)
    models = {name: load_any_model(spec, dev) for name, spec in zip(names, specs, strict=True)}
    # The subset the matrix attacks (an image folder decodes only these).
    dataset = load_dataset(data, "test", data_dir).take(n, seed=0)
    for name, model in models.items():
        check_class_order(dataset.classes, model_classes(model), f"{data} (test)", name)
    extra = {
        "command": "transfer-matrix",
        "model_specs": dict(zip(names, map(str, specs), strict=True)),
        "data": data,
        "data_dir": str(data_dir) if data_dir else None,
        "split": "test",
    }

    def save(partial: Results) -> None:
        partial.config.update(extra)
        if save_to is not None:
            partial.save(save_to)

    res = transfer_matrix(
        models,
        dataset,
        attacks,
        eps,
        n=n,
        device=dev,
        progress=progress,
        on_source_done=save,
        fuse=fuse,
    )
    save(res)
    return res


__all__ = ["transfer_matrix", "transfer_matrix_from_specs"]
