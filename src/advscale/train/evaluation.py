"""Evaluation inside training: clean validation accuracy each epoch, robust accuracy and label
leaking at the end.

In a distributed run every process evaluates its own shard of the examples (no padding) and
the counts are summed, so each example is counted exactly once.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from advscale.data import BatchLoader, ImageDataset
from advscale.train.config import TrainConfig
from advscale.train.distributed import DistInfo, all_reduce_sum
from advscale.utils import eval_mode


def shard(dataset: ImageDataset, info: DistInfo) -> ImageDataset:
    """This process's examples of ``dataset``: a disjoint share, no example repeated."""
    if not info.enabled:
        return dataset
    idx, real = BatchLoader(
        dataset, 1, shuffle=False, rank=info.rank, world_size=info.world_size
    ).indices()
    return dataset.subset(idx[:real])


@torch.no_grad()
def clean_accuracy(
    model: nn.Module, dataset: ImageDataset, info: DistInfo, batch_size: int = 500
) -> float:
    """Top-1 accuracy on ``dataset``, over all processes."""
    counts = torch.zeros(2, dtype=torch.float64, device=info.device)
    with eval_mode(model):
        part = shard(dataset, info)
        if len(part):
            for x, y in BatchLoader(part, batch_size, shuffle=False, device=info.device):
                counts[0] += (model(x).argmax(1) == y).sum()
                counts[1] += len(y)
    all_reduce_sum(counts, info)
    return float(counts[0] / counts[1].clamp_min(1))


def robust_records(
    model: nn.Module,
    dataset: ImageDataset,
    info: DistInfo,
    *,
    attacks: list[str],
    eps: list[float],
    batch_size: int,
    attack_kwargs: dict[str, dict[str, Any]],
    seed: int,
    progress: bool,
) -> list[dict[str, Any]]:
    """Records of ``advscale.evaluate.evaluate`` (attack, eps in pixel levels, accuracy, ...),
    with accuracies combined over processes."""
    from advscale.evaluate import evaluate

    with eval_mode(model):
        report = evaluate(
            model,
            shard(dataset, info),
            attacks=attacks,
            eps=eps,
            batch_size=batch_size,
            attack_kwargs=attack_kwargs,
            device=info.device,
            seed=seed + info.rank,
            progress=progress and info.is_main,
        )
    records = [dict(r) for r in report.records]
    if info.enabled:
        # accuracy and clean_accuracy are means over this shard; sum them as counts.
        keys = ("accuracy", "clean_accuracy")
        t = torch.tensor(
            [[r[k] * r["n"] for k in keys] + [r["n"]] for r in records],
            dtype=torch.float64,
            device=info.device,
        )
        all_reduce_sum(t, info)
        for r, row in zip(records, t.tolist(), strict=True):
            total = max(row[-1], 1.0)
            r.update({k: v / total for k, v in zip(keys, row[:-1], strict=True)}, n=int(row[-1]))
            r["ratio"] = r["accuracy"] / r["clean_accuracy"] if r["clean_accuracy"] else None
            for k in ("top5", "accuracy_final"):
                r.pop(k, None)  # per-shard values; not combined
    return records


def final_records(
    model: nn.Module, eval_set: ImageDataset, cfg: TrainConfig, info: DistInfo
) -> list[dict[str, Any]]:
    """The end-of-run evaluation ``cfg.eval`` asks for, on ``eval_set``, over all processes."""
    return robust_records(
        model,
        eval_set,
        info,
        attacks=list(cfg.eval.attacks),
        eps=cfg.eval_eps(),
        batch_size=cfg.eval.batch_size,
        attack_kwargs=cfg.eval.attack_kwargs,
        seed=cfg.seed,
        progress=cfg.progress,
    )


def label_leak_rows(
    model: nn.Module, eval_set: ImageDataset, cfg: TrainConfig, step: int
) -> tuple[list[dict[str, Any]] | None, list[dict[str, Any]], str | None]:
    """Label leaking on up to 1000 examples of ``eval_set`` at the evaluation ε.

    Returns:
        ``(rows, events, note)``: the rows (None when not measured), a ``label_leak`` event
        per row that leaks, and a note saying why it was not measured (else None).
    """
    try:
        from advscale.evaluate.label_leak import label_leak
    except ImportError:
        return None, [], "label leaking not measured: advscale.evaluate.label_leak is not available"
    model.eval()
    rows = label_leak(model, eval_set.take(min(len(eval_set), 1000), seed=cfg.seed), cfg.eval_eps())
    rows = [dict(r) for r in rows]
    events = [
        {
            "type": "event",
            "event": "label_leak",
            "step": step,
            **{k: v for k, v in r.items() if isinstance(v, (int, float, str, bool))},
        }
        for r in rows
        if r.get("leak")
    ]
    return rows, events, None
