"""Which weights become the model: the last ones, or the best by a validation metric.

With ``select.metric`` set (see :class:`~advscale.train.config.SelectConfig`) the weights the run
evaluates are measured at the end of every epoch on a fixed held-out subset of the validation
set; the best so far are kept in ``checkpoints/best.safetensors`` and become ``model.safetensors``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from advscale.attacks import build_attack
from advscale.data import BatchLoader
from advscale.train import checkpoint as ckpt
from advscale.train.config import TrainConfig
from advscale.train.data import TrainData
from advscale.train.distributed import DistInfo, all_reduce_sum, broadcast
from advscale.train.evaluation import shard
from advscale.train.rundir import CHECKPOINTS
from advscale.utils import eval_mode


class ModelSelector:
    """The ``select:`` metric of a run and the best value seen (saved with checkpoints).

    Each process measures its share of the subset; the counts are summed, so every process
    takes the same decision.
    """

    def __init__(self, cfg: TrainConfig, data: TrainData, info: DistInfo) -> None:
        s = cfg.select
        self.metric, self.steps, self.info = s.metric, s.pgd_steps, info
        self.eps = (cfg.recipe.eps if s.eps is None else s.eps) / 255
        self.subset = shard(data.val.take(s.n, seed=cfg.seed + 5), info)
        self.batch_size = cfg.eval.batch_size
        self.seed = cfg.seed + 6
        self.best = -1.0
        self.best_step = -1

    def measure(self, model: nn.Module) -> float:
        """The metric of ``model`` now (accuracy in [0, 1])."""
        counts = torch.zeros(2, dtype=torch.float64, device=self.info.device)
        with eval_mode(model):
            attack = None
            if self.metric == "val_pgd_acc" and self.eps > 0:
                attack = build_attack(
                    "pgd", model, self.eps, steps=self.steps, seed=self.seed, early_stop=False
                )
            if len(self.subset):
                loader = BatchLoader(
                    self.subset, self.batch_size, shuffle=False, device=self.info.device
                )
                for x, y in loader:
                    xa = attack(x, y) if attack is not None else x
                    with torch.no_grad():
                        counts[0] += (model(xa).argmax(1) == y).sum()
                    counts[1] += len(y)
        all_reduce_sum(counts, self.info)
        return float(broadcast(counts[0] / counts[1].clamp_min(1), self.info))

    def update(self, value: float, step: int) -> bool:
        """Record ``value`` measured at ``step``; True when it is the best so far."""
        if value > self.best:
            self.best, self.best_step = value, step
            return True
        return False

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "best_step": self.best_step}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best, self.best_step = float(state["best"]), int(state["best_step"])


def best_metric_name(trainer: Any) -> str:
    """What ``checkpoints/best.safetensors`` of a run is the best by: the ``select:`` metric,
    else the guard's PGD accuracy, else clean validation accuracy."""
    if trainer.selector is not None:
        return trainer.cfg.select.metric
    return "guard_pgd_acc" if trainer.guard is not None else "val_clean_acc"


def save_best(trainer: Any, model: nn.Module) -> None:
    """Write ``model`` as ``checkpoints/best`` of ``trainer``'s run (process 0), with the step,
    the metric's name and its value in the sidecar."""
    if trainer.dist.is_main:
        ckpt.save_weights(
            model,
            trainer.out / CHECKPOINTS / "best",
            step=trainer.step,
            metric=trainer.best_metric,
            metric_name=best_metric_name(trainer),
            **trainer.data.model_meta(trainer.cfg.data),
        )
