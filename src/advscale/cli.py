"""The ``advscale`` command line: parse, validate, call the library. No logic lives here.

Each subcommand has an ``_add_<name>`` function that declares its arguments and a handler that
calls one library function. ε is given in pixel levels (8 means 8/255).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path


def _eps_list(text: str) -> list[float]:
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


def _name_list(text: str) -> list[str]:
    return [v.strip() for v in text.split(",") if v.strip()]


# -- data -----------------------------------------------------------------------------------
def _add_data(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="get or inspect datasets")
    dsub = p.add_subparsers(dest="data_command", required=True)
    f = dsub.add_parser("fetch", help="download a dataset with SHA-256 verification")
    f.add_argument("name", help="dataset name (fashion-mnist)")
    f.add_argument("--to", required=True, type=Path, help="directory to write the files to")
    f.add_argument(
        "--base-url", default=None, help="mirror to download from instead of the official location"
    )
    f.set_defaults(handler=_run_data_fetch)
    i = dsub.add_parser("info", help="show size, shape and classes of a dataset")
    i.add_argument("name", help="dataset name")
    i.add_argument("--data-dir", type=Path, default=None)
    i.set_defaults(handler=_run_data_info)


def _run_data_fetch(args: argparse.Namespace) -> int:
    from advscale.data.fetch import fetch_dataset

    for path in fetch_dataset(args.name, args.to, base_url=args.base_url):
        print(path)
    return 0


def _run_data_info(args: argparse.Namespace) -> int:
    import json

    from advscale.data import dataset_info

    print(json.dumps(dataset_info(args.name, args.data_dir), indent=2))
    return 0


# -- eval -----------------------------------------------------------------------------------
def _add_eval(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="robust accuracy of a model under attacks over a list of ε")
    p.add_argument(
        "--model",
        required=True,
        help="advscale checkpoint (path without extension, or .safetensors/.json), a TorchScript "
        "file, timm:NAME@WEIGHTS, package.module:factory@WEIGHTS or a .yaml model spec",
    )
    p.add_argument("--data", default="fashion-mnist", help="dataset name")
    p.add_argument("--data-dir", type=Path, default=None)
    p.add_argument("--split", default="test")
    p.add_argument(
        "--attacks",
        type=_name_list,
        default=["fgsm", "step_ll", "iter_basic", "iter_ll", "pgd", "apgd"],
    )
    p.add_argument(
        "--eps",
        type=_eps_list,
        default=[2, 4, 8, 16],
        help="pixel levels, e.g. 2,4,8,16 (8 means 8/255)",
    )
    p.add_argument(
        "--n", type=int, default=1000, help="number of test examples (stratified subset)"
    )
    p.add_argument("--batch-size", type=int, default=500)
    p.add_argument(
        "--cascade", action="store_true", help="later attacks run only on points still robust"
    )
    p.add_argument(
        "--preset",
        choices=["custom", "strong"],
        default="custom",
        help="strong: APGD-CE, APGD-T, Square as a cascade (overrides --attacks)",
    )
    p.add_argument("--device", default="auto")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--apgd-steps", type=int, default=None, help="iterations of the APGD attacks (default 100)"
    )
    p.add_argument(
        "--no-unbounded-check",
        action="store_true",
        help="skip the PGD check at eps=255/255 that an unbounded attack reaches ~0%%",
    )
    p.add_argument(
        "--no-fuse",
        action="store_true",
        help="attack the model as loaded, not a copy with batch norm folded (slower, same numbers)",
    )
    p.add_argument("--out", type=Path, default=Path("results.json"))
    p.set_defaults(handler=_run_eval)


def _run_eval(args: argparse.Namespace) -> int:
    from advscale.evaluate import run_eval_command

    return run_eval_command(args)


# -- train / finetune / compare ---------------------------------------------------------------
def _add_run_commands(sub: argparse._SubParsersAction) -> None:
    for name, helptext in (
        ("train", "adversarial training from a YAML config"),
        ("finetune", "(adversarial) fine-tuning of a pretrained backbone from a YAML config"),
        ("compare", "FGSM vs PGD fine-tuning over modes and ε: robustness against cost"),
    ):
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
        if name != "train":
            p.add_argument(
                "--trust-checkpoint",
                action="store_true",
                help="allow a backbone .pt/.pth that needs full unpickling (only for files you trust)",
            )
        p.set_defaults(handler=_run_config_command, command_name=name)


def _run_config_command(args: argparse.Namespace) -> int:
    if args.command_name == "train":
        from advscale.train import run_train_command

        return run_train_command(args)
    from advscale.transfer import run_compare_command, run_finetune_command

    return (run_finetune_command if args.command_name == "finetune" else run_compare_command)(args)


# -- analysis -------------------------------------------------------------------------------
def _add_transfer_matrix(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "transfer-matrix", help="transfer rates of adversarial examples between models"
    )
    p.add_argument("--models", required=True, type=_name_list, help="comma-separated checkpoints")
    p.add_argument("--attacks", type=_name_list, default=["fgsm", "iter_basic", "iter_ll"])
    p.add_argument("--eps", type=_eps_list, default=[4, 8, 16])
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
    p.set_defaults(handler=_run_transfer_matrix)


def _run_transfer_matrix(args: argparse.Namespace) -> int:
    from advscale.evaluate.transfer_matrix import run_transfer_matrix_command

    return run_transfer_matrix_command(args)


def _add_sweep(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sweep", help="train and evaluate over values of one config field (e.g. width)"
    )
    p.add_argument("--config", required=True, type=Path)
    p.add_argument(
        "--out", type=Path, default=None, help="sweep directory (default: from the config)"
    )
    p.set_defaults(handler=_run_sweep)


def _run_sweep(args: argparse.Namespace) -> int:
    from advscale.sweep import run_sweep_command

    return run_sweep_command(args)


def _add_report(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report", help="one self-contained HTML (and Markdown) report from run directories"
    )
    p.add_argument("runs", nargs="+", type=Path, help="run directories or results.json files")
    p.add_argument("--out", type=Path, default=Path("report.html"))
    p.set_defaults(handler=_run_report)


def _run_report(args: argparse.Namespace) -> int:
    from advscale.report import run_report_command

    return run_report_command(args)


def _add_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo", help="train baseline and hardened models, attack them, write a report"
    )
    p.add_argument("--out", type=Path, default=Path("runs/demo"))
    p.add_argument("--data-dir", type=Path, default=None)
    p.add_argument(
        "--quick", action="store_true", help="a much smaller run (seconds), for smoke tests"
    )
    p.add_argument("--device", default="auto")
    p.set_defaults(handler=_run_demo)


def _run_demo(args: argparse.Namespace) -> int:
    from advscale.demo import run_demo_command

    return run_demo_command(args)


def build_parser() -> argparse.ArgumentParser:
    from advscale import __version__

    parser = argparse.ArgumentParser(
        prog="advscale",
        description="Adversarial machine learning at scale: attack, evaluate, harden and compare models.",
    )
    parser.add_argument("--version", action="version", version=f"advscale {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in (
        _add_data,
        _add_eval,
        _add_run_commands,
        _add_transfer_matrix,
        _add_sweep,
        _add_report,
        _add_demo,
    ):
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``advscale`` console script and ``python -m advscale``."""
    args = build_parser().parse_args(argv)
    from advscale.errors import UserError

    try:
        return int(args.handler(args) or 0)
    except UserError as e:
        print(f"advscale {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
