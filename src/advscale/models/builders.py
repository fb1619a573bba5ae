"""timm and torchvision architectures: one builder each, their heads and local weight caches.

Both libraries are optional and imported only when a model of theirs is asked for. Checkpoints of
fine-tuned timm/torchvision models name ``timm``/``torchvision`` as their architecture (with
``model_name`` among the arguments), so :func:`advscale.models.load_model` rebuilds them here.

Example:
    >>> net = build_timm("resnet18", num_classes=10)  # doctest: +SKIP
    >>> head = classifier_name(net)  # doctest: +SKIP
"""

from __future__ import annotations

import difflib
import sys
from pathlib import Path
from typing import Any

import torch
from torch import nn

from advscale.errors import UserError
from advscale.models.registry import register_model
from advscale.models.weights import CheckpointError, load_state
from advscale.utils import set_submodule

# The statistics timm and torchvision ImageNet models are trained with.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class ModelBuildError(UserError):
    """A timm/torchvision model that cannot be built: unknown name, missing library or cache."""


def import_timm() -> Any:
    try:
        import timm
    except ImportError as e:
        raise ModelBuildError(
            f"timm models need the timm package (pip install 'advscale[timm]'): {e}"
        ) from None
    return timm


def import_torchvision() -> Any:
    try:
        import torchvision.models
    except Exception as e:  # a torchvision built for another torch fails with RuntimeError too
        raise ModelBuildError(
            f"torchvision models need a torchvision that matches torch {torch.__version__}: "
            f"{type(e).__name__}: {e}"
        ) from None
    return torchvision.models


def _unknown(library: str, name: str, known: list[str]) -> ModelBuildError:
    close = difflib.get_close_matches(name, known, n=5, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    return ModelBuildError(f"unknown {library} model {name!r}{hint}")


def build_timm(name: str, *, pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """The timm architecture ``name`` (``timm.create_model`` arguments in ``kwargs``).

    ``pretrained=True`` downloads its weights through timm: the only network access here.
    """
    timm = import_timm()
    if not timm.is_model(name):
        raise _unknown("timm", name, timm.list_models())
    return timm.create_model(name, pretrained=pretrained, **kwargs)


def build_torchvision(name: str, *, pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """The torchvision architecture ``name``; ``pretrained=True`` downloads its default weights."""
    tvm = import_torchvision()
    known = tvm.list_models(module=tvm)
    if name not in known:
        raise _unknown("torchvision", name, known)
    return tvm.get_model(name, weights="DEFAULT" if pretrained else None, **kwargs)


def pretrained_config(net: nn.Module) -> dict[str, Any]:
    """What timm declares about a model's pretraining (mean, std, input_size...); {} otherwise."""
    return dict(getattr(net, "pretrained_cfg", None) or {})


def load_timm_weights(
    net: nn.Module, state: dict[str, torch.Tensor], source: str, skip: str = ""
) -> None:
    """Load ``state`` into a timm ``net`` (see :func:`~advscale.models.weights.load_state`).

    Weights in the original repository's layout go through timm's own converter for the
    architecture, as timm does when it loads pretrained weights.
    """
    try:
        load_state(net, state, source, skip=skip)
    except CheckpointError:
        convert = getattr(sys.modules[type(net).__module__], "checkpoint_filter_fn", None)
        if convert is None:
            raise
        load_state(net, convert(state, net), source, skip=skip)


def cached_weights(library: str, name: str, net: nn.Module) -> str:
    """The local cached pretrained weights of a timm (Hugging Face cache) or torchvision (torch
    hub cache) model; never the network.

    Raises:
        ModelBuildError: not in the cache (the message says how to get them).
    """
    if library == "torchvision":
        url = import_torchvision().get_model_weights(name).DEFAULT.url
        cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(url).name
        if not cached.exists():
            raise ModelBuildError(
                f"torchvision model {name!r}: {cached} is not in the local torch hub cache; give "
                "a local weights file, or download them (pretrained: hub)"
            )
        return str(cached)
    repo = pretrained_config(net).get("hf_hub_id")
    if not repo:
        raise ModelBuildError(
            f"timm model {name!r} has no Hugging Face weights to look up in the local cache"
        )
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        raise ModelBuildError(
            "the local timm weights cache needs huggingface_hub (pip install huggingface_hub)"
        ) from None
    repo_id = "/".join(repo.split("/", 2)[:2])
    for filename in ("model.safetensors", "pytorch_model.bin"):
        found = try_to_load_from_cache(repo_id, filename)
        if isinstance(found, str) and Path(found).exists():
            return found
    raise ModelBuildError(
        f"timm model {name!r}: weights of {repo_id} are not in the local Hugging Face cache; give "
        "a local weights file, or download them (pretrained: hub)"
    )


# -- classification heads --------------------------------------------------------------------------
def last_linear(net: nn.Module) -> str:
    """Name of the last ``nn.Linear`` registered in ``net``: the classification layer."""
    names = [n for n, m in net.named_modules() if isinstance(m, nn.Linear)]
    if not names:
        raise ModelBuildError(
            f"{type(net).__name__} has no nn.Linear layer to use as classification head"
        )
    return names[-1]


def classifier_name(net: nn.Module) -> str:
    """Name of the classification layer: timm's ``get_classifier()``, else the last Linear."""
    if hasattr(net, "get_classifier"):
        head = net.get_classifier()
        for name, m in net.named_modules():
            if m is head:
                return name
    return last_linear(net)


def replace_linear(net: nn.Module, name: str, num_classes: int) -> nn.Linear:
    """Replace the Linear layer ``name`` of ``net`` by a new one with ``num_classes`` outputs."""
    old = net.get_submodule(name)
    new = nn.Linear(old.in_features, num_classes, bias=old.bias is not None)
    new.to(device=old.weight.device, dtype=old.weight.dtype)
    set_submodule(net, name, new)
    return new


def new_head(net: nn.Module, num_classes: int) -> str:
    """Give ``net`` a fresh ``num_classes`` classification layer; returns its name."""
    if hasattr(net, "reset_classifier"):  # timm
        net.reset_classifier(num_classes)
        return classifier_name(net)
    head = last_linear(net)
    replace_linear(net, head, num_classes)
    return head


# Checkpoints of fine-tuned models name these architectures (no pretrained weights: the file has
# them all).
@register_model("timm")
def _timm_arch(model_name: str, num_classes: int, **kwargs: Any) -> nn.Module:
    net = build_timm(model_name, **kwargs)
    new_head(net, num_classes)
    return net


@register_model("torchvision")
def _torchvision_arch(model_name: str, num_classes: int, **kwargs: Any) -> nn.Module:
    net = build_torchvision(model_name, **kwargs)
    new_head(net, num_classes)
    return net
