"""The ``advscale`` subcommands: each module declares its arguments (``add_parser``) and turns
the parsed Namespace into typed library calls (``run``), printing through
:mod:`advscale.report` and returning the exit status.

Only this package and :mod:`advscale.cli` see argparse.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def eps_list(text: str) -> list[float]:
    """``--eps 2,4,8``: pixel levels in [0, 255] (checked by the one pixel-level ε rule)."""
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--eps must be comma-separated numbers in pixel levels, got {text!r}"
        ) from None
    from advscale.evaluate.inputs import check_pixel_eps

    try:
        return check_pixel_eps(values, None)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"--eps {text!r}: {e}") from None


def name_list(text: str) -> list[str]:
    """``--attacks fgsm,pgd``: non-empty comma-separated names."""
    return [v.strip() for v in text.split(",") if v.strip()]


def positive_n(n: int | None) -> None:
    """Refuse ``--n`` of zero or less, naming the flag."""
    from advscale.errors import UserError

    if n is not None and n <= 0:
        raise UserError(f"--n must be a positive number of examples, got {n}")


def add_config_run_parser(
    sub: argparse._SubParsersAction, name: str, helptext: str, trust: bool
) -> argparse.ArgumentParser:
    """The arguments train, finetune and compare share: a YAML config, a run directory,
    ``--resume``/``--force``, ``--set`` overrides and (``trust``) ``--trust-checkpoint``."""
    p = sub.add_parser(name, help=helptext)
    p.add_argument("--config", required=True, type=Path, help="YAML config")
    p.add_argument("--out", required=True, type=Path, help="run directory")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run exactly")
    p.add_argument("--force", action="store_true", help="overwrite an existing run directory")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set epochs=3 --set recipe.eps=4",
    )
    if trust:
        p.add_argument(
            "--trust-checkpoint",
            action="store_true",
            help="allow a backbone .pt/.pth that needs full unpickling (only for files you trust)",
        )
    return p


def print_run_summary(summary: dict[str, Any], keys: Sequence[str], wrote: Path) -> None:
    """Print the ``keys`` of a training summary, its events and the results file ``wrote``.

    Under ``torchrun`` only rank 0 prints: every process holds the same summary.
    """
    from advscale.report.text import format_summary
    from advscale.train.distributed import process_rank

    if process_rank() != 0:
        return
    print(format_summary(summary, keys))
    print(f"wrote {wrote}")
