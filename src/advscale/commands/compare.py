"""``advscale compare``: FGSM vs PGD fine-tuning over modes and ε, robustness against cost."""

from __future__ import annotations

import argparse
from pathlib import Path

from advscale.commands import add_config_run_parser


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = add_config_run_parser(
        sub, "compare", "FGSM vs PGD fine-tuning over modes and ε: robustness against cost", True
    )
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Run every point, write compare.md (and compare.png), print the table; exit status 1 when
    a point failed.

    ``--resume`` is accepted and is what a rerun does anyway: finished points are kept.
    """
    from advscale.errors import UserError
    from advscale.report.files import write_compare_files
    from advscale.report.text import compare_markdown
    from advscale.transfer.compare import compare, load_compare_config
    from advscale.utils import check_writable

    if args.resume and args.force:
        raise UserError(
            "--resume and --force contradict each other: --force deletes the finished points"
        )
    cfg = load_compare_config(args.config, args.set, trust=args.trust_checkpoint)
    check_writable(args.out, "--out", directory=True)
    results = compare(cfg, args.out, force=args.force)
    write_compare_files(results, args.out, plot=cfg.compare.plot)
    print(compare_markdown(results.records, results.summary), end="")
    print(
        f"wrote {Path(args.out) / 'results.json'}, compare.md"
        + (", compare.png" if cfg.compare.plot else "")
    )
    failed = results.summary.get("failed", 0)
    if failed:
        print(f"{failed} point(s) failed; see points/*/error.txt, rerun to retry them")
        return 1
    return 0
