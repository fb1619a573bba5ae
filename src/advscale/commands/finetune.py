"""``advscale finetune``: (adversarial) fine-tuning of a pretrained backbone."""

from __future__ import annotations

import argparse
from pathlib import Path

from advscale.commands import add_config_run_parser, print_run_summary

SUMMARY_KEYS = (
    "mode",
    "recipe",
    "eps",
    "epochs",
    "trainable_params",
    "total_params",
    "clean_accuracy",
    "fgsm_accuracy",
    "pgd_accuracy",
    "apgd_accuracy",
    "time_per_epoch_s",
    "stop_reason",
)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = add_config_run_parser(
        sub,
        "finetune",
        "(adversarial) fine-tuning of a pretrained backbone from a YAML config",
        True,
    )
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Fine-tune into ``--out`` and print the summary."""
    from advscale.transfer.finetune import finetune, load_finetune_config

    cfg = load_finetune_config(args.config, args.set, trust=args.trust_checkpoint)
    summary = finetune(cfg, args.out, resume=args.resume, force=args.force)
    print_run_summary(summary, SUMMARY_KEYS, Path(args.out) / "results.json")
    return 0
