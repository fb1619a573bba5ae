"""``advscale sweep``: train and evaluate over values of one config field."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sweep", help="train and evaluate over values of one config field (e.g. width)"
    )
    p.add_argument("--config", required=True, type=Path, help="sweep YAML file")
    p.add_argument(
        "--out", type=Path, default=None, help="sweep directory (default: the file's out:)"
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a value of the sweep file (--set eval.n=200 --set values=[1,2]) or, for "
        "any other key, of every point's training config (--set epochs=1)",
    )
    p.add_argument(
        "--shard",
        default=None,
        metavar="I/N",
        help="run only the I-th of N shares of the points (1 <= I <= N), into OUT/shard-I-of-N; "
        "'slurm' takes I and N from a SLURM array job. `advscale report OUT/shard-*` then "
        "reports the whole sweep",
    )
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Run the sweep, write its Markdown report, print the table; exit status 1 when a point
    failed."""
    from advscale.report import write_markdown_report
    from advscale.report.text import format_sweep, format_warnings
    from advscale.sweep import load_sweep, parse_shard, run_sweep, shard_dir
    from advscale.utils import check_writable

    cfg = load_sweep(args.config, args.out, args.set)
    shard = parse_shard(args.shard)
    check_writable(cfg.out, "sweep directory", directory=True)  # type: ignore[arg-type]
    res = run_sweep(cfg, shard=shard)
    out = Path(cfg.out)  # type: ignore[arg-type]
    if shard is not None:
        out = shard_dir(out, shard)
    title = f"Sweep over {cfg.field}" + (f", share {shard[0]} of {shard[1]}" if shard else "")
    report = write_markdown_report([out], out / "report.md", title=title)
    print(format_sweep(res))
    if res.summary["warnings"]:
        # Gradient-masking warnings, each naming its point: those accuracies may be overstated.
        print(format_warnings(res.summary["warnings"]), file=sys.stderr)
    print(f"wrote {out / 'results.json'} and {report}")
    if not res.complete:
        print(
            f"{res.summary['failed']} point(s) failed; rerun the same command to retry them "
            "(finished points are reused)",
            file=sys.stderr,
        )
        return 1
    return 0
