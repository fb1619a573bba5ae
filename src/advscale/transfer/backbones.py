"""Pretrained backbones for transfer learning: advscale checkpoints, timm and torchvision models.

A backbone becomes a :class:`TransferClassifier`: the pretrained network with a fresh head for the
new classes, wrapped so that it takes [0, 1] images of any size and channel count the backbone
can use (resizing and its own normalization happen inside the model, so attacks perturb pixels).

Weights come only from local files: an advscale checkpoint, a ``.safetensors``/``.pt``/``.pth``
file, or a copy already in the local Hugging Face / torch hub cache (``pretrained: cache``).
Nothing is downloaded unless the config says ``pretrained: hub``.

Example:
    >>> spec = BackboneConfig(kind="own", path="runs/pretrain/model")  # doctest: +SKIP
    >>> model = build_backbone(spec, num_classes=5, in_channels=1).model  # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import nn

from advscale.errors import UserError
from advscale.models import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    Classifier,
    ModelBuildError,
    build_timm,
    build_torchvision,
    load_model,
    load_state,
    read_weights,
)
from advscale.models.builders import (
    cached_weights,
    classifier_name,
    last_linear,
    load_timm_weights,
    new_head,
    pretrained_config,
    replace_linear,
)

NORM_TYPES = (nn.modules.batchnorm._BatchNorm,)


class BackboneError(UserError):
    """A backbone that cannot be built; the message names the config key or file to fix."""


class BackboneConfig(BaseModel):
    """``backbone:`` which pretrained network to start from.

    ``kind: own`` reads an advscale checkpoint (``path``, e.g. the ``model`` of an
    ``advscale train`` run). ``kind: timm`` / ``torchvision`` builds ``name`` and loads
    ``weights`` (a local file), the local hub cache (``pretrained: cache``) or downloads
    (``pretrained: hub``, the only setting that uses the network). ``input_size``, ``mean`` and
    ``std`` override what the backbone declares (e.g. run an ImageNet convnet at 64x64 on CPU;
    a ViT or Swin also needs ``kwargs: {img_size: 64}``, and its position embeddings then no
    longer fit 224-pixel weights).
    ``trust: true`` (or ``--trust-checkpoint``) allows a ``.pt`` that needs full unpickling.
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())

    kind: Literal["own", "timm", "torchvision"] = "own"
    path: str | None = Field(default=None, description="own: advscale checkpoint")
    name: str | None = Field(default=None, description="timm/torchvision: model name")
    weights: str | None = Field(default=None, description="timm/torchvision: local weights file")
    pretrained: Literal["none", "cache", "hub"] = "none"
    kwargs: dict[str, Any] = Field(default_factory=dict, description="extra model arguments")
    input_size: int | None = Field(default=None, ge=4)
    mean: list[float] | None = None
    std: list[float] | None = None
    trust: bool = False

    @model_validator(mode="after")
    def _check(self) -> BackboneConfig:
        if self.kind == "own":
            if not self.path:
                raise ValueError("backbone.kind 'own' needs backbone.path (an advscale checkpoint)")
            if self.name or self.weights or self.pretrained != "none":
                raise ValueError(
                    "backbone.kind 'own' takes only backbone.path; name/weights/pretrained are for "
                    "timm and torchvision backbones"
                )
        else:
            if not self.name:
                raise ValueError(f"backbone.kind {self.kind!r} needs backbone.name (a model name)")
            if self.weights and self.pretrained != "none":
                raise ValueError(
                    "give either backbone.weights (a local file) or backbone.pretrained, not both"
                )
        if (self.mean is None) != (self.std is None):
            raise ValueError("give backbone.mean and backbone.std together")
        return self


class TransferClassifier(Classifier):
    """A :class:`Classifier` whose frozen batch-norm layers stay in eval mode in ``train()``.

    ``frozen_norms`` names the batch-norm modules (inside ``net``) whose affine parameters are
    frozen: their running statistics must not drift either, or a frozen backbone would still
    change under training. Everything else follows ``train()``/``eval()`` as usual.
    """

    def __init__(self, *args: Any, head: str = "", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.head_name = head
        self.frozen_norms: list[str] = []

    def train(self, mode: bool = True) -> TransferClassifier:
        super().train(mode)
        if mode:
            for name in self.frozen_norms:
                self.net.get_submodule(name).eval()
        return self

    @property
    def head(self) -> nn.Module:
        """The classification layer that was replaced for the new classes."""
        return self.net.get_submodule(self.head_name)


@dataclass
class Backbone:
    """A built backbone: the model with its new head and what it was built from."""

    model: TransferClassifier
    info: dict[str, Any] = field(default_factory=dict)


# -- the three kinds -------------------------------------------------------------------------------
def build_backbone(
    spec: BackboneConfig, num_classes: int, in_channels: int | None = None
) -> Backbone:
    """The backbone of ``spec`` with a new ``num_classes`` head, ready to fine-tune.

    Args:
        spec: the ``backbone:`` config.
        num_classes: classes of the downstream task.
        in_channels: channels of the downstream images. Grey images fed to a 3-channel backbone
            are repeated across channels inside the model; colour images to a grey backbone
            are an error (convert the data with ``data.channels: 1``).

    Raises:
        BackboneError, CheckpointError: bad name, missing library, unusable weights.
    """
    if num_classes < 2:
        raise BackboneError(f"the downstream task needs at least 2 classes, got {num_classes}")
    if spec.kind == "own":
        net, meta = _own(spec)
    else:
        try:
            net, meta = _timm(spec) if spec.kind == "timm" else _torchvision(spec)
        except ModelBuildError as e:
            raise BackboneError(f"backbone (kind {spec.kind}, name {spec.name!r}): {e}") from None

    backbone_channels = int(meta["in_channels"])
    if in_channels is not None and in_channels not in (1, backbone_channels):
        raise BackboneError(
            f"the data has {in_channels} channels but the backbone takes {backbone_channels}; "
            f"set data.channels: {backbone_channels} to convert the images"
        )
    mean = list(spec.mean) if spec.mean is not None else list(meta["mean"])
    std = list(spec.std) if spec.std is not None else list(meta["std"])
    if len(mean) != backbone_channels or len(std) != backbone_channels:
        raise BackboneError(
            f"backbone.mean/std need {backbone_channels} values (one per backbone channel), "
            f"got mean={mean}, std={std}"
        )
    input_size = spec.input_size if spec.input_size is not None else meta.get("input_size")

    if spec.kind == "own":
        head = last_linear(net)
        replace_linear(net, head, num_classes)
    else:
        head = new_head(net, num_classes)
    arch_kwargs = dict(meta["arch_kwargs"], num_classes=num_classes)
    # Grey images reach a 3-channel backbone through Normalize: (x - mean) / std broadcasts one
    # channel against three, which is exactly repeating the grey channel before normalizing.
    model = TransferClassifier(
        net, mean, std, arch=meta["arch"], arch_kwargs=arch_kwargs, input_size=input_size, head=head
    )
    info = {
        "kind": spec.kind,
        "name": spec.name or meta["arch"],
        "source": meta["source"],
        "head": head,
        "num_classes": num_classes,
        "in_channels": backbone_channels,
        "input_size": list(model.input_size) if model.input_size else None,
        "mean": model.mean,
        "std": model.std,
        "params": sum(p.numel() for p in model.parameters()),
    }
    return Backbone(model, info)


def _own(spec: BackboneConfig) -> tuple[nn.Module, dict[str, Any]]:
    assert spec.path is not None
    loaded = load_model(Path(spec.path).expanduser())
    meta = dict(loaded.meta)  # type: ignore[attr-defined]
    if spec.kwargs:
        raise BackboneError(
            "backbone.kwargs is not used with kind 'own' (the checkpoint fixes the architecture)"
        )
    arch_kwargs = dict(loaded.arch_kwargs)
    return loaded.net, {
        "arch": loaded.arch,
        "arch_kwargs": arch_kwargs,
        "mean": loaded.mean,
        "std": loaded.std,
        "input_size": meta.get("input_size"),
        "in_channels": int(arch_kwargs.get("in_channels", len(loaded.mean))),
        "source": str(spec.path),
    }


def _pretrained(spec: BackboneConfig) -> tuple[nn.Module, str]:
    """The timm/torchvision network of ``spec`` with its pretrained body, and where that came from.

    Weights come from ``backbone.weights``, the local cache (``pretrained: cache``) or the hub
    (``pretrained: hub``); the file's classification head is ignored (it is replaced anyway).
    """
    name = str(spec.name)
    build = build_timm if spec.kind == "timm" else build_torchvision
    net = build(name, pretrained=spec.pretrained == "hub", **spec.kwargs)
    if spec.pretrained == "hub":
        return net, f"hub:{name}"
    weights = cached_weights(spec.kind, name, net) if spec.pretrained == "cache" else spec.weights
    if not weights:
        return net, "random init"
    state = read_weights(weights, trust=spec.trust)
    if spec.kind == "timm":
        load_timm_weights(net, state, str(weights), skip=classifier_name(net))
    else:
        load_state(net, state, str(weights), skip=last_linear(net))
    return net, str(weights)


def _timm(spec: BackboneConfig) -> tuple[nn.Module, dict[str, Any]]:
    name = str(spec.name)
    net, source = _pretrained(spec)
    cfg = pretrained_config(net)
    in_chans = int(spec.kwargs.get("in_chans", 3))
    mean = tuple(cfg.get("mean", IMAGENET_MEAN))
    std = tuple(cfg.get("std", IMAGENET_STD))
    if len(mean) != in_chans:
        mean, std = (sum(mean) / len(mean),) * in_chans, (sum(std) / len(std),) * in_chans
    input_size = cfg.get("input_size", (in_chans, 224, 224))
    # A fixed-size model (ViT, Swin) must see its own size; convnets accept any.
    img_size = spec.kwargs.get("img_size", input_size[-1])
    return net, {
        "arch": "timm",
        "arch_kwargs": {"model_name": name, **spec.kwargs},
        "mean": mean,
        "std": std,
        "input_size": int(img_size) if isinstance(img_size, int) else tuple(img_size),
        "in_channels": in_chans,
        "source": source,
    }


def _torchvision(spec: BackboneConfig) -> tuple[nn.Module, dict[str, Any]]:
    name = str(spec.name)
    net, source = _pretrained(spec)
    return net, {
        "arch": "torchvision",
        "arch_kwargs": {"model_name": name, **spec.kwargs},
        "mean": IMAGENET_MEAN,
        "std": IMAGENET_STD,
        "input_size": spec.kwargs.get("image_size", 224),
        "in_channels": 3,
        "source": source,
    }
