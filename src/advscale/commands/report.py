"""``advscale report``: one report from run directories: HTML (and Markdown), Markdown or CSV."""

from __future__ import annotations

import argparse
from pathlib import Path

from advscale.commands import eps_list


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report",
        help="one report from run directories: self-contained HTML (+ Markdown), Markdown or CSV",
    )
    p.add_argument("runs", nargs="+", type=Path, help="run directories or results.json files")
    p.add_argument(
        "--out",
        type=Path,
        default=Path("report.html"),
        help="report file; its extension chooses the format: .html (also writes the .md "
        "beside it), .md, or .csv (one row per record of every run)",
    )
    p.add_argument(
        "--eps",
        type=eps_list,
        default=None,
        help="the ε (pixel levels, 8 means 8/255) the summary compares robustness at "
        "(default: the ε the runs' own summaries use, such as a training run's evaluation ε; "
        "else the largest ε every run was evaluated at)",
    )
    p.add_argument("--title", default="advscale report")
    p.add_argument("--force", action="store_true", help="overwrite an existing report")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Write the report; print every file written."""
    from advscale.errors import UserError
    from advscale.report import write_report
    from advscale.utils import check_writable

    check_writable(args.out, "--out")
    out = Path(args.out)
    written = [out, out.with_suffix(".md")] if out.suffix == ".html" else [out]  # .md beside
    for path in written[1:]:  # the .md beside: a link or a device is refused before the work
        check_writable(path, "--out")
    existing = [p for p in written if p.exists()]
    if existing and not args.force:
        raise UserError(
            f"{existing[0]} already exists; pass --force to overwrite it, or another --out"
        )
    if args.eps is not None and len(args.eps) != 1:
        raise UserError(f"--eps takes one ε for the summary, got {len(args.eps)}")
    for path in write_report(
        args.runs, args.out, title=args.title, eps=None if args.eps is None else args.eps[0]
    ):
        print(path)
    return 0
