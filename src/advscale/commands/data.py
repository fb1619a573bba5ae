"""``advscale data fetch|info``: get or inspect datasets."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="get or inspect datasets")
    dsub = p.add_subparsers(dest="data_command", required=True)
    f = dsub.add_parser(
        "fetch", help="download a dataset, verified by the SHA-256 of its decompressed content"
    )
    f.add_argument("name", help="dataset name (fashion-mnist)")
    f.add_argument("--to", required=True, type=Path, help="directory to write the files to")
    f.add_argument(
        "--base-url",
        default=None,
        help="mirror to get the files from instead of the official location: a URL "
        "(https://..., file:///...) or a local directory, e.g. /usr/share/datasets/fashion-mnist",
    )
    f.set_defaults(handler=run_fetch)
    i = dsub.add_parser("info", help="show size, shape and classes of a dataset")
    i.add_argument("name", help="dataset name")
    i.add_argument("--data-dir", type=Path, default=None)
    i.set_defaults(handler=run_info)


def run_fetch(args: argparse.Namespace) -> int:
    """Download, print each file written."""
    from advscale.data.fetch import fetch_dataset

    for path in fetch_dataset(args.name, args.to, base_url=args.base_url):
        print(path)
    return 0


def run_info(args: argparse.Namespace) -> int:
    """Print the dataset's size, shape and classes as JSON."""
    from advscale.data import dataset_info

    print(json.dumps(dataset_info(args.name, args.data_dir), indent=2))
    return 0
