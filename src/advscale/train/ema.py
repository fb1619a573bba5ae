"""An exponential moving average of a model's weights (see :class:`~advscale.train.config.EmaConfig`).

The average is a copy of the model, updated in place after every optimizer step; it is the
model a run evaluates and saves when ``ema.decay`` is set, while training continues from the
raw weights. Its tensors go into every checkpoint, so a resumed run averages exactly as an
uninterrupted one.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from advscale.train.config import EmaConfig


class ModelEMA:
    """``average`` (a copy of ``model``) follows ``model``'s weights.

    Args:
        model: the plain trained module (not a DDP or compile wrapper).
        cfg: the ``ema:`` section (``decay`` must be set).
    """

    def __init__(self, model: nn.Module, cfg: EmaConfig) -> None:
        assert cfg.decay is not None
        self.cfg = cfg
        self.source = model
        self.average = copy.deepcopy(model).eval()
        for p in self.average.parameters():
            p.requires_grad_(False)
        self.updates = 0

    def decay(self) -> float:
        """The decay of the next update."""
        d = float(self.cfg.decay)  # type: ignore[arg-type]
        return min(d, (1 + self.updates) / (10 + self.updates)) if self.cfg.warmup else d

    @torch.no_grad()
    def update(self, step: int) -> None:
        """Fold the model's weights after optimizer step ``step`` (1-based) into the average;
        before ``start_step`` the average is a copy."""
        src = self.source.state_dict()
        if step <= self.cfg.start_step:
            for k, v in self.average.state_dict().items():
                v.copy_(src[k])
            return
        d = self.decay()
        for k, v in self.average.state_dict().items():
            if v.is_floating_point():
                v.lerp_(src[k].to(v.dtype), 1 - d)
            else:
                v.copy_(src[k])
        self.updates += 1

    def state_dict(self) -> dict[str, Any]:
        """The averaged tensors (on the CPU) and the update count."""
        tensors = {k: v.detach().cpu().clone() for k, v in self.average.state_dict().items()}
        return {"tensors": tensors, "updates": self.updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.average.load_state_dict(state["tensors"])
        self.updates = int(state["updates"])
