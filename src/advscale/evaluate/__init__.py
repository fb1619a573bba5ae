"""Evaluation: robust accuracy over attacks × ε, gradient-masking checks, label leaking.

Example:
    >>> from advscale.evaluate import evaluate, format_table
    >>> report = evaluate(model, test, attacks=["fgsm", "pgd"], eps=[2, 4, 8], n=1000)  # doctest: +SKIP
    >>> print(format_table(report.records))  # doctest: +SKIP
"""

from __future__ import annotations

import argparse
from typing import Any

from advscale.errors import UserError
from advscale.evaluate.label_leak import label_leak, leak_flag
from advscale.evaluate.robust import (
    APGD_NAMES,
    DEFAULT_ATTACK_KWARGS,
    PRESETS,
    WORST_CASE,
    EvalReport,
    evaluate,
    format_table,
    format_warnings,
    preset_attacks,
)

__all__ = [
    "DEFAULT_ATTACK_KWARGS",
    "PRESETS",
    "WORST_CASE",
    "EvalReport",
    "evaluate",
    "format_table",
    "format_warnings",
    "label_leak",
    "leak_flag",
    "preset_attacks",
    "run_eval_command",
]


def run_eval_command(args: argparse.Namespace) -> int:
    """``advscale eval``: load model and data, evaluate, print the table and warnings, save."""
    from advscale.data import check_class_order, load_dataset
    from advscale.models import load_any_model
    from advscale.models.loader import data_options, model_classes
    from advscale.utils import resolve_device

    if args.n is not None and args.n <= 0:
        raise UserError(f"--n must be a positive number of examples, got {args.n}")
    if args.batch_size <= 0:
        raise UserError(f"--batch-size must be positive, got {args.batch_size}")
    cascade = bool(args.cascade)
    attacks = list(args.attacks)
    warnings: list[dict[str, Any]] = []
    preset = getattr(args, "preset", "custom") or "custom"
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
    attack_kwargs: dict[str, dict[str, Any]] = {}
    apgd_steps = getattr(args, "apgd_steps", None)
    if apgd_steps is not None:
        if apgd_steps < 1:
            raise UserError(f"--apgd-steps must be >= 1, got {apgd_steps}")
        attack_kwargs.update({a: {"steps": apgd_steps} for a in APGD_NAMES})

    device = resolve_device(args.device)
    model = load_any_model(args.model, device, trust=getattr(args, "trust_checkpoint", False))
    data = load_dataset(
        args.data, args.split, args.data_dir, **data_options(model, args.data)
    ).take(args.n)
    source = f"{args.data} ({args.split})"
    class_order = check_class_order(data.classes, model_classes(model), source, str(args.model))
    report = evaluate(
        model,
        data,
        attacks=attacks,
        eps=args.eps,
        batch_size=args.batch_size,
        cascade=cascade,
        attack_kwargs=attack_kwargs,
        device=device,
        seed=args.seed,
        progress=True,
        check_unbounded=not getattr(args, "no_unbounded_check", False),
        fuse=not getattr(args, "no_fuse", False),
    )
    report.warnings[:0] = warnings
    results = report.to_results(
        {
            "command": "eval",
            "model": str(args.model),
            "data": args.data,
            "split": args.split,
            "data_dir": str(args.data_dir) if args.data_dir else None,
            "preset": preset,
            "class_order": class_order,
        }
    )
    print(
        f"{args.model} on {args.data}/{args.split}, n={report.n}, clean accuracy "
        f"{100 * report.clean_accuracy:.1f}%" + ("" if not cascade else ", cascade")
    )
    print(class_order)
    print(format_table(report.records))
    if report.warnings:
        print(format_warnings(report.warnings))
    else:
        print(f"gradient-masking checks passed: {', '.join(report.checks)}")
    path = results.save(args.out)
    print(f"wrote {path}")
    return 0
