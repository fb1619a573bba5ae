"""The parts of a run that its config and this process decide: settings checks, this process's
batches and step count, the model on its device, the catastrophic-overfitting guard."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from advscale.attacks import ONE_STEP
from advscale.data import BatchLoader, FolderDataset, ImageDataset, ShardLoader
from advscale.data.stream import IndexPlan, StreamLoader
from advscale.errors import UserError
from advscale.train.config import TrainConfig
from advscale.train.data import TrainData, transform_of
from advscale.train.distributed import DistInfo
from advscale.train.guards import CatastrophicOverfitGuard


def check_settings(cfg: TrainConfig, info: DistInfo) -> None:
    """Refuse settings that cannot run here or would mislead (UserError naming the key)."""
    if not any(a not in ONE_STEP for a in cfg.eval.attacks):
        raise UserError(
            f"eval.attacks {cfg.eval.attacks} holds only one-step attacks, which overstate "
            "robustness; add an iterative one (pgd, apgd, iter_basic, iter_ll)"
        )
    if cfg.amp == "fp16" and info.device.type != "cuda":
        raise UserError(
            "amp: fp16 needs a CUDA device (it uses a GradScaler); use amp: bf16 or none on CPU"
        )
    if cfg.batch_size % (info.world_size * cfg.grad_accum):
        raise UserError(
            f"batch_size={cfg.batch_size} must be divisible by processes x grad_accum = "
            f"{info.world_size} x {cfg.grad_accum}"
        )


def build_batches(cfg: TrainConfig, data: TrainData, info: DistInfo) -> tuple[Any, int, int]:
    """This process's micro-batch loader, the optimizer steps per epoch and the steps of the
    whole run: streamed from shards, decoded from an image folder in ``data.workers``
    processes, or drawn from memory (augmented on the device)."""
    micro = cfg.batch_size // (info.world_size * cfg.grad_accum)
    common = dict(seed=cfg.seed, rank=info.rank, world_size=info.world_size)
    transform = transform_of(cfg.data, cfg.seed)
    if isinstance(data.train, list):
        loader: Any = ShardLoader(
            data.train,
            micro,
            shuffle_buffer=cfg.data.shuffle_buffer,
            image_size=cfg.data.image_size,
            num_classes=data.num_classes,
            device=info.device,
            transform=transform,
            workers=cfg.data.workers,
            prefetch=cfg.data.prefetch,
            on_corrupt=cfg.data.on_corrupt,
            **common,
        )
        n_train = loader.num_samples
    else:
        n_train = len(data.train)
    if cfg.batch_size > n_train:
        raise UserError(
            f"batch_size={cfg.batch_size} is larger than the {n_train} training examples "
            f"(data.n_train={cfg.data.n_train}); lower batch_size or raise data.n_train"
        )
    if isinstance(data.train, FolderDataset):
        source = data.train.with_transform(transform)
        loader = StreamLoader(
            source,
            IndexPlan(n_train, micro, **common),
            device=info.device,
            workers=cfg.data.workers,
            prefetch=cfg.data.prefetch,
            on_corrupt=cfg.data.on_corrupt,
            name=data.train.name,
            example_shape=(source.channels, *source.image_size),
        )
    elif isinstance(data.train, ImageDataset):
        loader = BatchLoader(data.train, micro, shuffle=True, drop_last=True,
                             device=info.device, transform=transform, **common)  # fmt: skip
    steps_per_epoch = len(loader) // cfg.grad_accum
    if steps_per_epoch < 1:
        raise UserError(
            f"batch_size={cfg.batch_size} leaves no whole step per epoch for {n_train} examples"
        )
    total = cfg.epochs * steps_per_epoch
    return loader, steps_per_epoch, total if cfg.max_steps is None else min(total, cfg.max_steps)


def place_model(model: nn.Module, cfg: TrainConfig, info: DistInfo) -> nn.Module:
    """``model`` on this process's device, in the memory format and batch norm ``cfg`` asks for."""
    model = model.to(info.device)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if cfg.sync_bn and info.enabled:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    if not any(p.requires_grad for p in model.parameters()):
        raise UserError("the model has no parameter with requires_grad=True: nothing to train")
    check_batch_norm(model, cfg.batch_size // (info.world_size * cfg.grad_accum))
    return model


def build_guard(
    cfg: TrainConfig, data: TrainData, info: DistInfo
) -> tuple[CatastrophicOverfitGuard | None, str | None]:
    """The guard ``cfg.guard`` asks for, on held-out validation examples, or None with a note
    saying why it is off (None when it was not asked for)."""
    if not cfg.guard_enabled():
        return None, None
    if cfg.recipe.eps == 0:
        return None, "guard off: recipe.eps is 0"
    x, y = data.val.take(cfg.guard.n, seed=cfg.seed + 2).tensors(info.device)
    return CatastrophicOverfitGuard(cfg.guard, cfg.recipe.eps / 255, x, y, seed=cfg.seed + 3), None


def check_batch_norm(model: nn.Module, micro: int) -> None:
    """Batch norm in training needs two examples per forward pass (one has no variance)."""
    if micro < 2 and any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
        raise UserError(
            f"batch_size: {micro} example per forward pass (batch_size / (processes x "
            "grad_accum)), and the model has batch norm, which needs at least 2 in training; "
            "raise batch_size"
        )
