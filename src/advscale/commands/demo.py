"""``advscale demo``: train baseline and hardened models, attack them, write a report."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo", help="train baseline and hardened models, attack them, write a report"
    )
    p.add_argument("--out", type=Path, default=Path("runs/demo"))
    p.add_argument("--data-dir", type=Path, default=None)
    p.add_argument(
        "--quick",
        action="store_true",
        help="a much smaller run (a few minutes on 2 CPU cores), for smoke tests",
    )
    p.add_argument("--device", default="auto")
    again = p.add_mutually_exclusive_group()
    again.add_argument(
        "--resume",
        action="store_true",
        help="continue the demo in --out (or start one): finished models are not trained again",
    )
    again.add_argument("--force", action="store_true", help="delete the demo in --out, start anew")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Run the demo; it prints its progress and summary itself."""
    from advscale.demo import run_demo
    from advscale.utils import check_writable

    check_writable(args.out, "--out", directory=True)
    run_demo(
        args.out,
        args.data_dir,
        quick=args.quick,
        device=args.device,
        force=args.force,
        resume=args.resume,
    )
    return 0
