"""One optimizer step: the recipe makes the inputs, the model learns from them.

The loss is ``Σ w·CE / Σ w`` over the global batch (all processes, all micro-batches), so one
process with one big batch, gradient accumulation and DDP all take the same step. After the
update, batch-norm statistics are averaged over processes (every process makes its next
adversarial examples with the same model) and the weights' moving average, if any, follows.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from advscale.train.config import TrainConfig
from advscale.train.distributed import DistInfo, all_reduce_sum, sync_buffers
from advscale.train.ema import ModelEMA
from advscale.train.recipes import Recipe


class NonFiniteStep(Exception):
    """The loss of micro-batch ``micro`` was not finite in some process (``value`` here)."""

    def __init__(self, value: float, micro: int) -> None:
        super().__init__(f"non-finite loss {value} in micro-batch {micro}")
        self.value, self.micro = value, micro


@dataclass
class Optimization:
    """What one step updates: the models (plain, attacked, trained — see ``Trainer.setup``),
    the optimizer, its schedule, the fp16 gradient scaler and the weights' moving average
    (None when not used)."""

    cfg: TrainConfig
    dist: DistInfo
    recipe: Recipe
    gen_model: nn.Module
    train_model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    scaler: torch.amp.GradScaler | None
    ema: ModelEMA | None = None

    def autocast(self) -> Any:
        """The mixed-precision context ``cfg.amp`` asks for."""
        if self.cfg.amp == "none":
            return nullcontext()
        dtype = torch.bfloat16 if self.cfg.amp == "bf16" else torch.float16
        return torch.autocast(device_type=self.dist.device.type, dtype=dtype)

    def step(
        self, micro_batches: list[tuple[torch.Tensor, torch.Tensor]], step: int
    ) -> tuple[float, float, float, int]:
        """One optimizer step (the ``step``-th) over this process's micro-batches ``(x, y)``.

        Returns this process's (Σ w·CE, Σ w, correct, n).

        Raises:
            NonFiniteStep: a micro-batch's loss was not finite in some process (every process
                raises it, before any update).
        """
        cfg, d = self.cfg, self.dist
        self.train_model.train()
        self.optimizer.zero_grad(set_to_none=True)
        totals = [0.0, 0.0, 0.0, 0]
        for j, (x, y) in enumerate(micro_batches):
            if cfg.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with self.autocast():
                batch = self.recipe(self.gen_model, x, y, step)
            inputs = batch.inputs
            if cfg.channels_last:
                inputs = inputs.contiguous(memory_format=torch.channels_last)
            last = j == len(micro_batches) - 1
            sync = self.train_model.no_sync() if (d.enabled and not last) else nullcontext()  # type: ignore[operator]
            with sync:
                with self.autocast():
                    logits = self.train_model(inputs)
                ce = F.cross_entropy(
                    logits.float(),
                    batch.labels,
                    reduction="none",
                    label_smoothing=cfg.label_smoothing,
                )
                w = batch.weights.to(ce.dtype)
                num = (w * ce).sum()
                # Normalize by the weights of all processes, so DDP's gradient average equals the
                # single-process Σ w·CE / Σ w over the global batch.
                stats = torch.stack(
                    [w.sum().detach(), (~torch.isfinite(num.detach())).to(ce.dtype)]
                )
                all_reduce_sum(stats, d)
                if float(stats[1]) > 0:
                    raise NonFiniteStep(float(num.detach()), j)
                loss = num * (d.world_size / cfg.grad_accum) / stats[0].clamp_min(1e-12)
                if self.scaler is not None:
                    self.scaler.scale(loss).backward()
                else:
                    loss.backward()
            totals[0] += float(num.detach())
            totals[1] += float(w.sum())
            totals[2] += float((logits.detach().argmax(1) == batch.labels).sum())
            totals[3] += len(y)
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.scheduler.step()
        if not cfg.sync_bn:  # SyncBatchNorm's statistics are already the same everywhere
            sync_buffers(self.gen_model, d)
        if self.ema is not None:
            self.ema.update(step + 1)
        return totals[0], totals[1], totals[2], int(totals[3])
