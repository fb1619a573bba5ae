"""Fine-tuning modes: which parameters of a pretrained backbone train.

==========  ==========================================================================
full        every parameter
linear      only the new head; the backbone is frozen, its batch norm in eval mode too
partial     the last ``blocks`` blocks, everything after them and the head
lora        low-rank adapters on Linear/Conv2d layers (``advscale.transfer.lora``) + head
bias        every bias term (BitFit) + head
==========  ==========================================================================

Whatever trains, adversarial fine-tuning perturbs the *input* image and back-propagates through
the whole network: freezing a parameter stops its update, never the gradient to the pixels.

Example:
    >>> report = apply_mode(model, FinetuneModeConfig(mode="linear"))  # doctest: +SKIP
    >>> report["trainable_params"], report["total_params"]  # doctest: +SKIP
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from advscale.errors import UserError
from advscale.transfer.backbones import NORM_TYPES, TransferClassifier
from advscale.transfer.lora import add_lora

MODES = ("full", "linear", "partial", "lora", "bias")
# Containers that hold a backbone's sequence of blocks in timm, torchvision and advscale models.
BLOCK_CONTAINERS = ("blocks", "layers", "stages", "encoder.layers", "encoder.layer")


class ModeError(UserError):
    """A fine-tuning mode that cannot be applied; the message names the ``finetune.*`` key."""


class LoRAConfig(BaseModel):
    """``finetune.lora:`` rank, scale and which layers get adapters (glob patterns)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    rank: int = Field(default=4, ge=1)
    alpha: float = Field(default=8.0, gt=0)
    targets: list[str] | None = Field(
        default=None, description="default: every Linear/Conv2d but the head"
    )


class FinetuneModeConfig(BaseModel):
    """``finetune:`` the mode and its settings (``blocks`` for partial, ``lora`` for lora).

    ``init: random`` re-initializes the backbone before training: the same architecture trained
    from scratch, the control that shows what the pretrained weights bring.
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    mode: Literal["full", "linear", "partial", "lora", "bias"] = "full"
    blocks: int = Field(default=1, ge=1, description="partial: how many of the last blocks train")
    lora: LoRAConfig = Field(default_factory=LoRAConfig)
    init: Literal["pretrained", "random"] = "pretrained"


def backbone_blocks(net: nn.Module, head: str = "") -> list[list[str]]:
    """The backbone's blocks in forward order, each as the module names it consists of.

    A container named ``blocks``/``layers``/``stages`` (ViT, Swin, PreAct ResNet), or
    ``layer1..layerN`` (ResNet), gives one block per child. Otherwise each weight layer (Conv,
    Linear) with the normalization layers right after it is a block. The head is never a block.
    """
    for path in BLOCK_CONTAINERS:
        try:
            container = net.get_submodule(path)
        except AttributeError:
            continue
        if isinstance(container, (nn.Sequential, nn.ModuleList)) and len(container) > 1:
            return [[f"{path}.{i}"] for i in range(len(container))]
    stages = [n for n, _ in net.named_children() if re.fullmatch(r"layer\d+", n)]
    if len(stages) > 1:
        return [[n] for n in stages]
    blocks: list[list[str]] = []
    for name, m in net.named_modules():
        if not name or not any(True for _ in m.parameters(recurse=False)):
            continue
        if head and (name == head or name.startswith(head + ".")):
            continue
        if isinstance(m, (nn.Linear, nn.modules.conv._ConvNd)) or not blocks:
            blocks.append([name])
        else:
            blocks[-1].append(name)
    return blocks


def _inside(name: str, prefixes: list[str]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def apply_mode(model: TransferClassifier, cfg: FinetuneModeConfig) -> dict[str, Any]:
    """Set which parameters of ``model`` train (``requires_grad``) and which batch norms freeze.

    Returns a report: ``mode``, ``trainable_params``, ``total_params``, ``trainable_fraction``,
    ``frozen_norms`` (count) and, by mode, ``blocks`` or ``lora_layers``.

    Raises:
        ModeError: partial with more blocks than the backbone has; LoRAError (a ModeError's
            sibling UserError) for an unmatched LoRA target.
    """
    net, head = model.net, model.head_name
    report: dict[str, Any] = {"mode": cfg.mode}
    trained_prefixes: list[str] = [head]
    if cfg.mode == "lora":
        layers = add_lora(net, cfg.lora.targets, cfg.lora.rank, cfg.lora.alpha, exclude=[head])
        report.update(lora_layers=len(layers), lora_rank=cfg.lora.rank, lora_alpha=cfg.lora.alpha)

    names = [n for n, _ in net.named_parameters()]
    if cfg.mode == "full":
        trainable = set(names)
        trained_prefixes = [""]
    elif cfg.mode == "linear":
        trainable = {n for n in names if _inside(n, [head])}
    elif cfg.mode == "bias":
        trainable = {n for n in names if n.endswith("bias") or _inside(n, [head])}
    elif cfg.mode == "lora":
        trainable = {n for n in names if n.endswith((".lora_A", ".lora_B")) or _inside(n, [head])}
    else:  # partial
        blocks = backbone_blocks(net, head)
        if cfg.blocks > len(blocks):
            raise ModeError(
                f"finetune.blocks={cfg.blocks} but the backbone has {len(blocks)} blocks "
                f"({', '.join(b[0] for b in blocks[:8])}{', ...' if len(blocks) > 8 else ''})"
            )
        first = blocks[-cfg.blocks]
        # Everything registered from the first trained block on trains: the blocks themselves and
        # what sits between them and the head (a final norm, a pre-logits layer).
        start = min(i for i, n in enumerate(names) if _inside(n, first))
        trainable = set(names[start:]) | {n for n in names if _inside(n, [head])}
        trained_prefixes = [m for b in blocks[-cfg.blocks :] for m in b] + [
            n.rpartition(".")[0] for n in names[start:]
        ]
        report["blocks"] = cfg.blocks
        report["blocks_total"] = len(blocks)

    for n, p in net.named_parameters():
        p.requires_grad_(n in trainable)

    frozen_norms = []
    if cfg.mode != "full":
        for n, m in net.named_modules():
            if not isinstance(m, NORM_TYPES):
                continue
            own_trainable = any(p.requires_grad for p in m.parameters(recurse=False))
            # A norm without affine parameters inside a trained block keeps updating its statistics.
            if not own_trainable and not (cfg.mode == "partial" and _inside(n, trained_prefixes)):
                frozen_norms.append(n)
    model.frozen_norms = frozen_norms
    model.train(model.training)

    total = sum(p.numel() for p in model.parameters())
    n_train = sum(p.numel() for p in model.parameters() if p.requires_grad)
    if n_train == 0:
        raise ModeError(f"finetune.mode={cfg.mode!r} leaves no parameter to train")
    report.update(
        trainable_params=n_train,
        total_params=total,
        trainable_fraction=n_train / total,
        frozen_norms=len(frozen_norms),
    )
    return report


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """``(trainable, total)`` parameter counts."""
    total = sum(p.numel() for p in model.parameters())
    return sum(p.numel() for p in model.parameters() if p.requires_grad), total
