"""``advscale report``: one self-contained HTML (and Markdown) report from run directories."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report", help="one self-contained HTML (and Markdown) report from run directories"
    )
    p.add_argument("runs", nargs="+", type=Path, help="run directories or results.json files")
    p.add_argument("--out", type=Path, default=Path("report.html"))
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Write the HTML report and the Markdown beside it; print both paths."""
    from advscale.report import write_html_report
    from advscale.utils import check_writable

    check_writable(args.out, "--out")
    out = write_html_report(args.runs, args.out)
    print(out)
    print(out.with_suffix(".md"))
    return 0
