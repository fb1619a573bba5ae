"""``advscale train``: adversarial training from a YAML config."""

from __future__ import annotations

import argparse
from pathlib import Path

from advscale.commands import add_config_run_parser, print_run_summary

SUMMARY_KEYS = (
    "recipe",
    "eps",
    "epochs",
    "steps",
    "clean_accuracy",
    "fgsm_accuracy",
    "pgd_accuracy",
    "time_per_epoch_s",
    "images_per_s",
    "stop_reason",
    "model_weights",
)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = add_config_run_parser(sub, "train", "adversarial training from a YAML config", False)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Train into ``--out`` and print the summary."""
    from advscale.train import load_config, train

    cfg = load_config(args.config, list(args.set or []))
    summary = train(cfg, args.out, resume=args.resume, force=args.force)
    print_run_summary(summary, SUMMARY_KEYS, Path(args.out) / "results.json")
    return 0
