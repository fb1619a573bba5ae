"""Evaluation: robust accuracy over attacks × ε, gradient-masking checks, label leaking.

Example:
    >>> from advscale.evaluate import evaluate
    >>> from advscale.report.text import format_table
    >>> report = evaluate(model, test, attacks=["fgsm", "pgd"], eps=[2, 4, 8], n=1000)  # doctest: +SKIP
    >>> print(format_table(report.records))  # doctest: +SKIP
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from advscale.attacks import canonical_norm
from advscale.errors import UserError
from advscale.evaluate.distributed import Shard
from advscale.evaluate.examples import FILE_NAME as EXAMPLES_FILE
from advscale.evaluate.examples import AdversarialExamples, save_examples
from advscale.evaluate.inputs import canonical_attack_kwargs, check_attacks
from advscale.evaluate.label_leak import label_leak, leak_flag
from advscale.evaluate.norms import EPS_UNITS
from advscale.evaluate.robust import (
    APGD_NAMES,
    DEFAULT_ATTACK_KWARGS,
    PRESETS,
    WORST_CASE,
    EvalReport,
    evaluate,
    preset_attacks,
)
from advscale.results import Results

__all__ = [
    "AdversarialExamples",
    "save_examples",
    "DEFAULT_ATTACK_KWARGS",
    "PRESETS",
    "WORST_CASE",
    "EvalReport",
    "Shard",
    "evaluate",
    "label_leak",
    "leak_flag",
    "preset_attacks",
    "evaluate_spec",
]


def evaluate_spec(
    model: str,
    *,
    data: str = "fashion-mnist",
    split: str = "test",
    data_dir: str | os.PathLike | None = None,
    n: int | None = 1000,
    attacks: Sequence[str] = ("fgsm", "step_ll", "iter_basic", "iter_ll", "pgd", "apgd"),
    eps: Sequence[float] = (2, 4, 8, 16),
    batch_size: int = 500,
    cascade: bool = False,
    preset: str = "custom",
    apgd_steps: int | None = None,
    device: str | torch.device = "auto",
    seed: int = 0,
    check_unbounded: bool = True,
    fuse: bool = True,
    progress: bool = True,
    trust: bool = False,
    save_adv: str | os.PathLike | None = None,
    norm: str = "linf",
    attack_kwargs: dict[str, dict[str, Any]] | None = None,
    target: str | int | None = None,
    shard: Shard | None = None,
    image_size: int | None = None,
    eval_resize: int | None = None,
    eot: int = 1,
) -> Results:
    """Load the model named by ``model`` (see :func:`advscale.models.load_any_model`; ``trust``
    allows a weights file that needs full unpickling) and ``n`` examples of
    ``data``/``split``, evaluate, and return the ``eval`` results (not saved).

    ``preset`` other than "custom" replaces ``attacks`` and turns the cascade on; ``apgd_steps``
    sets the iterations of every APGD attack. ``save_adv`` (a directory) keeps up to 8 broken
    examples per attack × ε in ``save_adv/examples.safetensors``, named in the config's
    ``adversarial_examples``. ``norm``, ``attack_kwargs``, ``shard`` and ``eot`` are
    :func:`evaluate`'s; ``target`` ("ll", "random" or a class index) makes every attack
    targeted. ``eps`` are pixel levels for L∞ and L2 radii in [0, 1] units for L2.
    ``image_size`` and ``eval_resize`` size the images (see :func:`advscale.data.load_dataset`)
    instead of the model's input size.

    Raises:
        UserError: bad ``n``, ``batch_size`` or ``apgd_steps``, unknown attack, unreadable model
            or data, a model whose classes do not match the data.
    """
    from advscale.data import check_class_order, load_dataset
    from advscale.models import load_any_model, model_classes
    from advscale.models.checkpoint import checkpoint_name
    from advscale.models.loader import data_options
    from advscale.utils import resolve_device

    if n is not None and n <= 0:
        raise UserError(f"n must be a positive number of examples, got {n}")
    if batch_size <= 0:
        raise UserError(f"batch_size must be positive, got {batch_size}")
    norm = canonical_norm(norm)
    attacks = list(attacks)
    warnings: list[dict[str, Any]] = []
    if preset != "custom":
        attacks, missing = preset_attacks(preset)
        cascade = True
        if missing:
            warnings.append(
                {
                    "check": "preset",
                    "message": (
                        f"preset {preset!r}: {', '.join(missing)} not available in this installation; "
                        f"ran {', '.join(attacks)} only, so robust accuracy may be overstated"
                    ),
                }
            )
    attacks = check_attacks(attacks)
    kwargs: dict[str, dict[str, Any]] = {}
    if apgd_steps is not None:
        if apgd_steps < 1:
            raise UserError(f"apgd_steps must be >= 1, got {apgd_steps}")
        kwargs.update({a: {"steps": apgd_steps} for a in APGD_NAMES})
        if "autoattack" in attacks:
            raise UserError(
                "apgd_steps (--apgd-steps) cannot change the reference AutoAttack: its budgets "
                "are fixed so that its number is comparable; drop --apgd-steps"
            )
        if "strong" in attacks:  # the cascade's own APGD-CE and APGD-T stages
            kwargs["strong"] = {"ce_steps": apgd_steps, "t_steps": apgd_steps}
    if target is not None:
        if "autoattack" in attacks:
            raise UserError(
                f"target {target!r} (--target): the reference AutoAttack is untargeted, as its "
                "number is quoted; drop --target or use --preset strong"
            )
        for a in attacks:
            kwargs[a] = {**kwargs.get(a, {}), "target": target}
    for a, kw in canonical_attack_kwargs(attack_kwargs or {}, "attack_kwargs").items():
        kwargs[a] = {**kwargs.get(a, {}), **kw}

    dev = resolve_device(device)
    net = load_any_model(model, dev, trust=trust)
    sizes = {k: v for k, v in (("image_size", image_size), ("eval_resize", eval_resize)) if v}
    # The n examples are chosen before any is resized or decoded.
    options = {**data_options(net, data), **sizes}
    dataset = load_dataset(data, split, data_dir, n=n, **options).take(n)
    class_order = check_class_order(
        dataset.classes, model_classes(net), f"{data} ({split})", str(model)
    )
    report = evaluate(
        net,
        dataset,
        attacks=attacks,
        eps=eps,
        batch_size=batch_size,
        cascade=cascade,
        attack_kwargs=kwargs,
        device=dev,
        seed=seed,
        progress=progress,
        check_unbounded=check_unbounded,
        fuse=fuse,
        keep_examples=8 if save_adv is not None else 0,
        norm=norm,  # type: ignore[arg-type]
        shard=shard,
        eot=eot,
    )
    report.warnings[:0] = warnings
    saved = {}
    if save_adv is not None and report.examples is not None:
        path = save_examples(
            report.examples, Path(save_adv) / EXAMPLES_FILE, classes=dataset.classes,
            model=checkpoint_name(str(model)), eps_unit=EPS_UNITS[norm],
        )  # fmt: skip
        saved["adversarial_examples"] = str(path.resolve())
    return report.to_results(
        {
            "command": "eval",
            "model": str(model),
            # The name reports show the model under: reports read it, they do not parse paths.
            "name": checkpoint_name(str(model)),
            "data": data,
            "split": split,
            "data_dir": str(data_dir) if data_dir else None,
            "preset": preset,
            **sizes,
            "class_order": class_order,
            **saved,
        }
    )
