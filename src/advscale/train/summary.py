"""The end of a run on disk: ``summary.json`` (the roll-up) and ``results.json`` (the records)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from advscale.results import Results
from advscale.train.config import TrainConfig, config_to_dict
from advscale.utils import environment_info

# The trainer's progress: saved in every checkpoint, restored on resume, rolled up at the end.
PROGRESS = (
    "step",
    "epoch",
    "batch_in_epoch",
    "records",
    "events",
    "train_time",
    "images_seen",
    "best_metric",
    "stop_reason",
    "finished",
)
# Attacks whose accuracy at the headline ε gets its own ``<attack>_accuracy`` summary key.
HEADLINE_ATTACKS = ("fgsm", "pgd", "apgd", "apgd_ce", "apgd_t", "iter_basic", "iter_ll", "step_ll")


def build_summary(
    cfg: TrainConfig,
    eval_records: list[dict[str, Any]],
    progress: dict[str, Any],
    *,
    world_size: int,
    label_leak: list[dict[str, Any]] | None,
    guard: list[dict[str, Any]] | None,
    model_path: Path,
    notes: list[str],
) -> dict[str, Any]:
    """The run's summary: headline accuracies at ``eval_eps`` (the recipe's ε when evaluated,
    else the first), every robust accuracy by attack and ε, timing, events and notes.

    ``progress`` holds the trainer's :data:`PROGRESS` values (epoch records, step, time...).
    """
    train_time, images_seen = progress["train_time"], progress["images_seen"]
    stop_reason = progress["stop_reason"]
    eps_list = cfg.eval_eps()
    headline = cfg.recipe.eps if cfg.recipe.eps in eps_list else eps_list[0]
    robust: dict[str, dict[str, float]] = {}
    for r in eval_records:
        robust.setdefault(r["attack"], {})[f"{r['eps']:g}"] = r["accuracy"]
    clean = eval_records[0]["clean_accuracy"] if eval_records else None
    full = [r for r in progress["records"] if r.get("complete") and r.get("time_s")]
    summary: dict[str, Any] = {
        "recipe": cfg.recipe.name,
        "eps": cfg.recipe.eps,
        "eval_eps": headline,
        "epochs": progress["epoch"],
        "steps": progress["step"],
        "world_size": world_size,
        "clean_accuracy": clean,
    }
    for a in HEADLINE_ATTACKS:
        if a in robust and f"{headline:g}" in robust[a]:
            summary[f"{a}_accuracy"] = robust[a][f"{headline:g}"]
    summary.update(
        {
            "robust_accuracy": robust,
            "eps_unit": "1/255",
            "time_per_epoch_s": sum(r["time_s"] for r in full) / len(full) if full else None,
            "train_time_s": train_time,
            "images_per_s": images_seen / train_time if train_time > 0 else None,
            "events": progress["events"],
            "stopped_early": stop_reason is not None,
            "stop_reason": stop_reason,
            "label_leak": label_leak,
            "guard": guard,
            "model": str(model_path),
            "notes": notes,
        }
    )
    return summary


def write_results(
    path: Path,
    kind: str,
    cfg: TrainConfig,
    epoch_records: list[dict[str, Any]],
    device: torch.device,
    *,
    eval_records: list[dict[str, Any]] | None = None,
    summary: dict[str, Any] | None = None,
) -> None:
    """``results.json`` of kind ``kind``: the epoch records, and once the run is complete
    (``eval_records`` given) its final-evaluation records and summary."""
    records = [dict(r) for r in epoch_records]
    complete = eval_records is not None
    if complete:
        records += [{"type": "eval", **r} for r in eval_records]
    Results(
        kind=kind,
        records=records,
        config=config_to_dict(cfg),
        summary=summary or {},
        environment=environment_info(device),
        complete=complete,
    ).save(path)
