"""``advscale finetune``: (adversarial) fine-tuning of a pretrained backbone with the training loop.

A fine-tuning run is a training run (``advscale.train``: the same recipes, catastrophic-overfitting
guard, early stopping, checkpoints, exact resume and logs) whose model is a pretrained backbone
with a new head, in one of the modes of :mod:`advscale.transfer.modes`. The run directory is that
of ``advscale train`` (see ``advscale.train.loop``) with, for LoRA runs, ``adapters.safetensors``
beside the merged ``model.safetensors``; ``results.json`` is of kind ``"finetune"``.

Example:
    >>> cfg = load_finetune_config("configs/finetune_fmnist_digits.yaml", ["recipe.eps=8"])  # doctest: +SKIP
    >>> summary = finetune(cfg, "runs/ft")  # doctest: +SKIP
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field, model_validator
from torch import nn

from advscale.models import load_weights, read_sidecar, save_model
from advscale.results import load_results
from advscale.train import TrainConfig, load_config
from advscale.train.data import TrainData
from advscale.train.loop import EpochCallback, Trainer
from advscale.transfer.backbones import BackboneConfig, build_backbone
from advscale.transfer.lora import lora_layers, save_lora, strip_lora
from advscale.transfer.modes import FinetuneModeConfig, apply_mode
from advscale.utils import atomic_write_json


class FinetuneConfig(TrainConfig):
    """A training config with ``backbone:`` and ``finetune:``; ``model:`` is not used."""

    CALL_SITE_ONLY: ClassVar[dict[str, str]] = {
        "backbone.trust": "it allows unpickling the backbone checkpoint, which runs code stored "
        "in it; only for a file you trust, pass --trust-checkpoint on the command line (Python: "
        "load_finetune_config(..., trust=True))"
    }

    backbone: BackboneConfig
    finetune: FinetuneModeConfig = Field(default_factory=FinetuneModeConfig)

    @model_validator(mode="after")
    def _no_model_section(self) -> FinetuneConfig:
        if "model" in self.model_fields_set:
            raise ValueError(
                "the model: section is not used by fine-tuning; the backbone: section names the network"
            )
        return self


def reinitialize(net: nn.Module) -> int:
    """Re-initialize every layer of ``net`` that can (``reset_parameters``); returns how many."""
    n = 0
    for m in net.modules():
        reset = getattr(m, "reset_parameters", None)
        if callable(reset):
            reset()
            n += 1
    return n


class FinetuneTrainer(Trainer):
    """The training loop with a pretrained backbone as its model."""

    results_kind = "finetune"

    def build_model(self, data: TrainData) -> nn.Module:
        cfg: FinetuneConfig = self.cfg  # type: ignore[assignment]
        bb = build_backbone(cfg.backbone, num_classes=data.num_classes, in_channels=data.channels)
        if cfg.finetune.init == "random":
            reinitialize(bb.model.net)
        self.backbone_info = dict(bb.info, init=cfg.finetune.init)
        self.mode_report = apply_mode(bb.model, cfg.finetune)
        return bb.model

    def extra_summary(self) -> dict[str, Any]:
        report = getattr(self, "mode_report", {})
        return {
            "mode": report.get("mode"),
            "init": self.cfg.finetune.init,  # type: ignore[attr-defined]
            "trainable_params": report.get("trainable_params"),
            "total_params": report.get("total_params"),
            "backbone": getattr(self, "backbone_info", None),
            "finetune": report,
        }


def _export_lora(model: nn.Module, out: Path) -> dict[str, Any]:
    """Adapters to ``adapters.safetensors``; ``model.*`` rewritten with the adapters merged in,
    so that it loads with ``advscale.models.load_model`` like any other checkpoint."""
    if not lora_layers(model):
        return {}
    # The weights the run saved as its model (the last, their moving average or the best), not
    # the raw training weights.
    model = copy.deepcopy(model)
    load_weights(model, out / "model")
    adapters = save_lora(model, out / "adapters.safetensors")
    meta = {k: v for k, v in read_sidecar(out / "model").items() if k not in ("format", "version")}
    plain = strip_lora(copy.deepcopy(model))
    for key in ("arch", "arch_kwargs", "mean", "std", "input_size"):
        meta.pop(key, None)
    save_model(plain, out / "model", lora_merged=True, **meta)  # type: ignore[arg-type]
    return {"adapters": str(adapters)}


def finetune(
    config: FinetuneConfig,
    out_dir: str | os.PathLike,
    *,
    resume: bool = False,
    force: bool = False,
    on_epoch: EpochCallback | None = None,
) -> dict[str, Any]:
    """Fine-tune as ``config`` says into the run directory ``out_dir``; returns the summary.

    The summary is that of :func:`advscale.train.train` plus ``mode``, ``init``,
    ``trainable_params``, ``total_params``, ``backbone`` (what was loaded) and ``finetune``
    (the mode report).

    Raises:
        UserError: bad config, unusable backbone or weights, existing run directory, ...
    """
    out = Path(out_dir)
    trainer = FinetuneTrainer(config, out, resume=resume, force=force, on_epoch=on_epoch)
    summary = trainer.run()
    extra = _export_lora(trainer.model, out)
    if extra:
        summary.update(extra)
        atomic_write_json(out / "summary.json", summary)
        results = load_results(out / "results.json")
        results.summary.update(extra)
        results.save(out / "results.json")
    return summary


def load_finetune_config(
    path: str | os.PathLike | None, overrides: list[str] | None = None, trust: bool = False
) -> FinetuneConfig:
    """Read a fine-tuning YAML config with ``--set`` overrides; ``trust`` (and nothing in the
    file or the overrides) sets ``backbone.trust``, which allows unpickling the checkpoint."""
    call_site = {"backbone.trust": True} if trust else None
    return load_config(path, overrides, FinetuneConfig, call_site=call_site)
