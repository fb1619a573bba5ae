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

import difflib
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import nn

from advscale.errors import UserError
from advscale.models import (
    CheckpointError,
    Classifier,
    check_state_dict,
    load_model,
    load_state_dict_file,
    register_model,
)
from advscale.utils import set_submodule

# The statistics timm and torchvision ImageNet models are trained with.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
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
    ``trust`` allows a ``.pt`` that needs full unpickling; only ``--trust-checkpoint`` or a
    Python caller sets it (a config file or ``--set`` that names it is refused).
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


# -- weights files -------------------------------------------------------------------------------
def read_weights(path: str | os.PathLike, trust: bool = False) -> dict[str, torch.Tensor]:
    """Tensors of a ``.safetensors``/``.pt``/``.pth`` weights file.

    A ``.pt`` is read with ``torch.load(weights_only=True)``; one that needs full unpickling
    (custom classes, whole pickled modules) is refused with the reason, unless ``trust`` is set.

    Raises:
        CheckpointError: missing, unreadable or refused file.
    """
    path = Path(path).expanduser()
    try:
        return load_state_dict_file(path)
    except CheckpointError as e:
        # Only the safe torch.load failing leaves an exception context: the file exists and is a
        # pickle that needs more than tensors. Missing files and non-dicts fail without one.
        refused = path.suffix != ".safetensors" and path.exists() and e.__context__ is not None
        if not refused:
            raise
        if not trust:
            raise CheckpointError(
                f"{path}: refused to load: it holds objects that only full unpickling can rebuild"
                f"{_unpickling_reason(e.__context__)}, and unpickling runs code stored in the file. "
                "Only if you trust where it comes from, pass --trust-checkpoint "
                "(Python: trust=True; a config file cannot set it)."
            ) from None
    return _load_trusted(path)


def _unpickling_reason(err: BaseException | None) -> str:
    """The line of torch's weights-only error that names the object it would not rebuild."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(err or ""))
    for line in text.splitlines():
        if "Unsupported global" in line or "Unsupported operand" in line:
            reason = line.strip().removeprefix("WeightsUnpickler error: ").split(". ")[0]
            return f" ({reason})"
    return ""


def _load_trusted(path: Path) -> dict[str, torch.Tensor]:
    obj = torch.load(path, map_location="cpu", weights_only=False)
    if isinstance(obj, nn.Module):
        return obj.state_dict()
    for key in ("state_dict", "model", "model_state_dict", "module"):
        if isinstance(obj, dict) and key in obj:
            inner = obj[key]
            obj = inner.state_dict() if isinstance(inner, nn.Module) else inner
            break
    if not isinstance(obj, dict):
        raise CheckpointError(
            f"{path}: expected a state_dict or a module, got {type(obj).__name__}"
        )
    tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise CheckpointError(f"{path}: holds no tensors")
    return tensors


def _strip_prefixes(state: dict[str, torch.Tensor], own_keys: set[str]) -> dict[str, torch.Tensor]:
    """Drop wrapper prefixes (DataParallel ``module.``, torch.compile ``_orig_mod.``) when they don't fit."""
    for prefix in ("module.", "_orig_mod.", "model."):
        if state and not (set(state) & own_keys) and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix) :]: v for k, v in state.items()}
    return state


def load_backbone_weights(
    net: nn.Module, state: dict[str, torch.Tensor], head: str, source: str
) -> dict[str, Any]:
    """Load ``state`` into ``net``, ignoring the classification head (it is replaced anyway).

    Raises:
        CheckpointError: listing missing, unexpected and mis-shaped keys of the rest.
    """
    own = net.state_dict()
    state = _strip_prefixes(state, set(own))
    is_head = lambda k: bool(head) and (k == head or k.startswith(head + "."))  # noqa: E731
    body_state = {k: v for k, v in state.items() if not is_head(k)}
    # The net's own head tensors stand in for the file's: only the body has to match.
    full = {**{k: v for k, v in own.items() if is_head(k)}, **body_state}
    check_state_dict(net, full, source=source)
    net.load_state_dict(full)
    return {"loaded_tensors": len(body_state), "head_in_file": any(is_head(k) for k in state)}


# -- heads ---------------------------------------------------------------------------------------
def last_linear(net: nn.Module) -> str:
    """Name of the last ``nn.Linear`` registered in ``net``: the classification layer."""
    names = [n for n, m in net.named_modules() if isinstance(m, nn.Linear)]
    if not names:
        raise BackboneError(
            f"{type(net).__name__} has no nn.Linear layer to use as classification head"
        )
    return names[-1]


def replace_linear(net: nn.Module, name: str, num_classes: int) -> nn.Linear:
    """Replace the Linear layer ``name`` of ``net`` by a new one with ``num_classes`` outputs."""
    old = net.get_submodule(name)
    new = nn.Linear(old.in_features, num_classes, bias=old.bias is not None)
    new.to(device=old.weight.device, dtype=old.weight.dtype)
    set_submodule(net, name, new)
    return new


def _module_name(net: nn.Module, module: nn.Module) -> str:
    for name, m in net.named_modules():
        if m is module:
            return name
    raise BackboneError(f"classifier module not found in {type(net).__name__}")


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
    elif spec.kind == "timm":
        net, meta = _timm(spec)
    else:
        net, meta = _torchvision(spec)

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

    head = meta["head"]
    if spec.kind == "timm":
        net.reset_classifier(num_classes)
        head = _module_name(net, net.get_classifier())
    else:
        replace_linear(net, head, num_classes)
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
        "head": last_linear(loaded.net),
        "source": str(spec.path),
    }


def _import_timm() -> Any:
    try:
        import timm
    except ImportError as e:
        raise BackboneError(
            f"backbone.kind 'timm' needs the timm package (pip install 'advscale[timm]'): {e}"
        ) from None
    return timm


def _timm(spec: BackboneConfig) -> tuple[nn.Module, dict[str, Any]]:
    timm = _import_timm()
    name = str(spec.name)
    if not timm.is_model(name):
        close = difflib.get_close_matches(name, timm.list_models(), n=5, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise BackboneError(f"backbone.name: unknown timm model {name!r}{hint}")
    if spec.pretrained == "hub":
        net = timm.create_model(name, pretrained=True, **spec.kwargs)
        source = f"hub:{name}"
    else:
        net = timm.create_model(name, pretrained=False, **spec.kwargs)
        source = "random init"
        weights = spec.weights
        if spec.pretrained == "cache":
            weights = _timm_cached_file(timm, name, net)
        if weights:
            head = _module_name(net, net.get_classifier())
            state = read_weights(weights, trust=spec.trust)
            try:
                load_backbone_weights(net, state, head, source=str(weights))
            except CheckpointError:
                # Weights in the original repository's layout: timm's own converter for this
                # architecture maps them, as timm does when it loads pretrained weights.
                convert = getattr(sys.modules[type(net).__module__], "checkpoint_filter_fn", None)
                if convert is None:
                    raise
                load_backbone_weights(net, convert(state, net), head, source=str(weights))
            source = str(weights)
    cfg = dict(getattr(net, "pretrained_cfg", None) or {})
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
        "head": _module_name(net, net.get_classifier()),
        "source": source,
    }


def _timm_cached_file(timm: Any, name: str, net: nn.Module) -> str:
    """A timm model's pretrained weights from the local Hugging Face cache, never the network."""
    cfg = dict(getattr(net, "pretrained_cfg", None) or {})
    repo = cfg.get("hf_hub_id")
    if not repo:
        raise BackboneError(
            f"timm model {name!r} has no Hugging Face weights to look up in the local cache"
        )
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        raise BackboneError(
            "pretrained: cache needs huggingface_hub (pip install huggingface_hub)"
        ) from None
    repo = repo.split("/", 2)[:2]
    repo_id = "/".join(repo)
    for filename in ("model.safetensors", "pytorch_model.bin"):
        found = try_to_load_from_cache(repo_id, filename)
        if isinstance(found, str) and Path(found).exists():
            return found
    raise BackboneError(
        f"timm model {name!r}: weights of {repo_id} are not in the local Hugging Face cache; put a "
        "weights file in backbone.weights, or set backbone.pretrained: hub to download them"
    )


def _import_torchvision() -> Any:
    try:
        import torchvision.models
    except Exception as e:  # a torchvision built for another torch fails with RuntimeError too
        raise BackboneError(
            f"backbone.kind 'torchvision' needs a torchvision that matches torch {torch.__version__}: "
            f"{type(e).__name__}: {e}"
        ) from None
    return torchvision.models


def _torchvision(spec: BackboneConfig) -> tuple[nn.Module, dict[str, Any]]:
    tvm = _import_torchvision()
    name = str(spec.name)
    known = tvm.list_models(module=tvm)
    if name not in known:
        close = difflib.get_close_matches(name, known, n=5, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise BackboneError(f"backbone.name: unknown torchvision model {name!r}{hint}")
    weights = spec.weights
    if spec.pretrained == "hub":
        net = tvm.get_model(name, weights="DEFAULT", **spec.kwargs)
        source = f"hub:{name}"
    else:
        net = tvm.get_model(name, weights=None, **spec.kwargs)
        source = "random init"
        if spec.pretrained == "cache":
            url = tvm.get_model_weights(name).DEFAULT.url
            cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(url).name
            if not cached.exists():
                raise BackboneError(
                    f"torchvision model {name!r}: {cached} is not in the local torch hub cache; put a "
                    "weights file in backbone.weights, or set backbone.pretrained: hub to download it"
                )
            weights = str(cached)
    head = last_linear(net)
    if weights:
        load_backbone_weights(
            net, read_weights(weights, trust=spec.trust), head, source=str(weights)
        )
        source = str(weights)
    in_chans = 3
    return net, {
        "arch": "torchvision",
        "arch_kwargs": {"model_name": name, **spec.kwargs},
        "mean": IMAGENET_MEAN,
        "std": IMAGENET_STD,
        "input_size": spec.kwargs.get("image_size", 224),
        "in_channels": in_chans,
        "head": head,
        "source": source,
    }


# Checkpoints of fine-tuned timm/torchvision models name these as their architecture, so that
# advscale.models.load_model can rebuild them (without pretrained weights: the file has them all).
@register_model("timm")
def _timm_arch(model_name: str, num_classes: int, **kwargs: Any) -> nn.Module:
    net = _import_timm().create_model(model_name, pretrained=False, **kwargs)
    net.reset_classifier(num_classes)
    return net


@register_model("torchvision")
def _torchvision_arch(model_name: str, num_classes: int, **kwargs: Any) -> nn.Module:
    net = _import_torchvision().get_model(model_name, weights=None, **kwargs)
    replace_linear(net, last_linear(net), num_classes)
    return net
