"""The optimizer and the learning-rate schedule of a training run."""

from __future__ import annotations

import functools
import math
from typing import Any

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


class RMSpropTF(torch.optim.Optimizer):
    """RMSProp as TensorFlow computes it (paper A trained Inception v3 with it).

    Per parameter, with ``g`` the gradient plus ``weight_decay``·p::

        ms  = decay·ms + (1 − decay)·g²          (ms starts at 1, not 0)
        mom = momentum·mom + lr·g / sqrt(ms + eps)
        p  -= mom

    PyTorch's RMSprop starts the mean square at 0 and adds ``eps`` outside the root,
    ``g / (sqrt(ms) + eps)``: with paper A's ε = 1.0 the two take different steps.
    """

    def __init__(
        self,
        params: Any,
        lr: float,
        decay: float = 0.9,
        eps: float = 1.0,
        momentum: float = 0.0,
        weight_decay: float = 0.0,
    ) -> None:
        defaults = dict(lr=lr, decay=decay, eps=eps, momentum=momentum, weight_decay=weight_decay)
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad
                if group["weight_decay"]:
                    g = g.add(p, alpha=group["weight_decay"])
                state = self.state[p]
                if not state:
                    state["square_avg"] = torch.ones_like(p)
                    state["momentum_buffer"] = torch.zeros_like(p)
                ms, mom = state["square_avg"], state["momentum_buffer"]
                ms.mul_(group["decay"]).addcmul_(g, g, value=1 - group["decay"])
                update = g / (ms + group["eps"]).sqrt()
                mom.mul_(group["momentum"]).add_(update, alpha=group["lr"])
                p.sub_(mom)
        return loss


def build_optimizer(cfg: TrainConfig, params: list[nn.Parameter]) -> torch.optim.Optimizer:
    """The optimizer ``cfg.optimizer`` names, over ``params``."""
    o = cfg.optimizer
    if o.name == "sgd":
        return torch.optim.SGD(
            params, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay, nesterov=o.nesterov
        )
    if o.name == "adamw":
        return torch.optim.AdamW(
            params, lr=o.lr, betas=o.betas, eps=o.eps or 1e-8, weight_decay=o.weight_decay
        )
    eps = 1.0 if o.eps is None else o.eps
    if o.name == "rmsprop":
        return torch.optim.RMSprop(
            params,
            lr=o.lr,
            alpha=o.decay,
            eps=eps,
            momentum=o.momentum,
            weight_decay=o.weight_decay,
        )
    return RMSpropTF(
        params, lr=o.lr, decay=o.decay, eps=eps, momentum=o.momentum, weight_decay=o.weight_decay
    )


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
