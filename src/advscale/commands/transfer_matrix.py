"""``advscale transfer-matrix``: transfer rates of adversarial examples between models."""

from __future__ import annotations

import argparse
from pathlib import Path

from advscale.commands import eps_list, name_list, positive_n


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "transfer-matrix", help="transfer rates of adversarial examples between models"
    )
    p.add_argument("--models", required=True, type=name_list, help="comma-separated checkpoints")
    p.add_argument("--attacks", type=name_list, default=["fgsm", "iter_basic", "iter_ll"])
    p.add_argument("--eps", type=eps_list, default=[4, 8, 16])
    p.add_argument("--data", default="fashion-mnist")
    p.add_argument("--data-dir", type=Path, default=None)
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--device", default="auto")
    p.add_argument(
        "--no-fuse",
        action="store_true",
        help="attack the models as loaded, not copies with batch norm folded (slower, same numbers)",
    )
    p.add_argument("--out", required=True, type=Path)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """results.json and one heatmap per attack and ε in ``--out``; the matrices printed."""
    from advscale.errors import UserError
    from advscale.evaluate.transfer_matrix import transfer_matrix_from_specs
    from advscale.report.files import write_heatmaps
    from advscale.report.text import format_matrix
    from advscale.utils import check_writable

    if len(args.models) < 2:
        raise UserError("--models needs at least two models (comma-separated) to measure transfer")
    positive_n(args.n)
    out_dir = check_writable(args.out, "--out", directory=True)
    res = transfer_matrix_from_specs(
        args.models,
        args.attacks,
        args.eps,
        data=args.data,
        data_dir=args.data_dir,
        n=args.n,
        device=args.device,
        fuse=not args.no_fuse,
        save_to=out_dir / "results.json",
    )
    for path in write_heatmaps(res, out_dir):
        print(path)
    print(format_matrix(res))
    print(f"wrote {out_dir / 'results.json'}")
    return 0
