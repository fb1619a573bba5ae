"""The optimizer and the learning-rate schedule of a training run."""

from __future__ import annotations

import functools
import math

import torch
from torch import nn

from advscale.train.config import TrainConfig


def lr_factor(cfg: TrainConfig, step: int, steps_per_epoch: int, total_steps: int) -> float:
    """Learning-rate multiplier after ``step`` optimizer steps (a pure function of the step)."""
    s = cfg.schedule
    warm = s.warmup * steps_per_epoch
    if warm > 0 and step < warm:
        return (step + 1) / warm
    if s.name == "constant":
        return 1.0
    if s.name == "cosine":
        span = max(total_steps - warm, 1)
        return 0.5 * (1 + math.cos(math.pi * min(step - warm, span) / span))
    if s.name == "cyclic":
        t = (step + 1) / max(total_steps, 1)
        return t / s.peak if t <= s.peak else max(0.0, (1 - t) / (1 - s.peak))
    epoch = step / max(steps_per_epoch, 1)
    return s.gamma ** sum(1 for m in s.milestones if epoch >= m)


def build_optimizer(cfg: TrainConfig, params: list[nn.Parameter]) -> torch.optim.Optimizer:
    """SGD or AdamW over ``params`` as ``cfg.optimizer`` says."""
    o = cfg.optimizer
    if o.name == "sgd":
        return torch.optim.SGD(
            params, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay, nesterov=o.nesterov
        )
    return torch.optim.AdamW(params, lr=o.lr, betas=o.betas, weight_decay=o.weight_decay)


def build_scheduler(
    cfg: TrainConfig, optimizer: torch.optim.Optimizer, steps_per_epoch: int, total_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """The schedule of :func:`lr_factor`, stepped once per optimizer step."""
    # functools.partial, not a lambda over the trainer: no reference cycle keeps the trainer
    # (and DDP's process group) alive past the run.
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        functools.partial(lr_factor, cfg, steps_per_epoch=steps_per_epoch, total_steps=total_steps),
    )
