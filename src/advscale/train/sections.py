"""Config sections of a training run beyond the basics: the weights' moving average (``ema:``),
which weights become the model (``select:``) and multi-process settings (``distributed:``);
:mod:`advscale.train.config` assembles them with the others into :class:`TrainConfig`."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from advscale.evaluate.inputs import PixelEps


class Section(BaseModel):
    """Base of every config section: unknown keys are errors, values are re-validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())


class EmaConfig(Section):
    """``ema:`` an exponential moving average of the weights, evaluated and saved as the model.

    After every optimizer step ``ema = d·ema + (1 − d)·w`` for every floating-point parameter and
    buffer (batch-norm statistics included), with ``d = decay`` or, with ``warmup``, ``min(decay,
    (1 + t) / (10 + t))`` after ``t`` updates so that a short run is not dominated by the initial
    weights. ``decay: null`` (the default) turns it off. Checkpoints keep both: the raw weights
    (training resumes from them) and the average.
    """

    decay: float | None = Field(default=None, gt=0, lt=1)
    warmup: bool = True
    start_step: int = Field(default=0, ge=0, description="steps before averaging starts")

    @property
    def enabled(self) -> bool:
        return self.decay is not None


class SelectConfig(Section):
    """``select:`` which weights become ``model.safetensors``.

    ``metric: last`` (default) keeps the final weights. ``val_pgd_acc`` or ``val_clean_acc``
    measures, at the end of every epoch, PGD-``pgd_steps`` (fixed random start) or clean accuracy
    at ε ``eps`` (default: the recipe's) on a fixed held-out subset of ``n`` validation
    examples, of the weights the run evaluates (the moving average when ``ema`` is on), keeps
    the best in ``checkpoints/best.safetensors`` and saves that one as the model; the summary says which.
    """

    metric: Literal["last", "val_pgd_acc", "val_clean_acc"] = "last"
    n: int = Field(default=500, ge=1)
    pgd_steps: int = Field(default=10, ge=1)
    eps: PixelEps | None = None


class DistributedConfig(Section):
    """``distributed:`` multi-process settings (``torchrun``).

    ``timeout_s`` bounds every collective: a process whose peer died ends with an error naming
    the run after at most this long instead of waiting forever.
    """

    timeout_s: float = Field(default=1800.0, gt=0, le=86400)
