"""Checkpoints: safetensors weights plus a JSON sidecar; loading never unpickles.

An advscale checkpoint (:func:`save_model`, :func:`load_model`) rebuilds its architecture by name
from the sidecar. Any other module is saved as a plain state dict (:func:`save_weights`) and
loaded back into a module the caller builds (:func:`load_weights`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch import nn

from advscale.models.weights import CheckpointError, check_state_dict, read_weights
from advscale.models.wrapper import Classifier, build_classifier
from advscale.utils import atomic_write, atomic_write_json, read_structured

FORMAT = "advscale.checkpoint"
FORMAT_VERSION = 1
#: Sidecar format of a module that is not a Classifier built by name (weights only).
STATE_DICT_FORMAT = "advscale.state_dict"
#: File names that say nothing about the model; its directory names it instead.
GENERIC_NAMES = ("model", "best", "last", "weights", "checkpoint", "final")
#: Directories that hold checkpoints without naming them (``runs/x/checkpoints/best``).
GENERIC_DIRS = ("checkpoints", "models")
#: Suffixes of TorchScript files (:func:`advscale.models.load_any_model`).
TORCHSCRIPT_SUFFIXES = (".ts", ".pt", ".pth", ".torchscript", ".jit")


def checkpoint_paths(path: str | os.PathLike) -> tuple[Path, Path]:
    """``(weights.safetensors, sidecar.json)`` for a checkpoint given with or without extension."""
    p = Path(path)
    if p.suffix in {".safetensors", ".json"}:
        p = p.with_suffix("")
    if not p.name:
        raise CheckpointError(
            f"{path}: a directory, not a checkpoint (name it, e.g. {p / 'model'})"
        )
    return p.with_name(p.name + ".safetensors"), p.with_name(p.name + ".json")


def checkpoint_name(path: str | os.PathLike, parts: int = 1) -> str:
    """A model's short name from its checkpoint path: the last ``parts`` parts that name it.

    The extension (``.safetensors``, ``.json`` or a TorchScript suffix) is dropped, and so is a
    generic file name (``model``, ``best``...) when its directory names the model, that is, is
    not itself generic (``checkpoints``, ``models``...). Other specs (``timm:resnet18``) keep
    their last path parts as they are.

    Example:
        >>> checkpoint_name("runs/a/baseline/model")
        'baseline'
        >>> checkpoint_name("runs/a/baseline/model.safetensors", parts=2)
        'a/baseline'
        >>> checkpoint_name("zoo/resnet18.pt")
        'resnet18'
        >>> checkpoint_name("runs/a/checkpoints/best")
        'best'
    """
    p = Path(path)
    if p.suffix in (".safetensors", ".json", *TORCHSCRIPT_SUFFIXES):
        p = p.with_suffix("")
    names = list(p.parts[1:] if p.anchor else p.parts)
    generic_dir = GENERIC_NAMES + GENERIC_DIRS
    if len(names) > 1 and names[-1] in GENERIC_NAMES and names[-2] not in generic_dir:
        names.pop()
    return "/".join(names[-max(parts, 1) :]) or str(path)


def save_model(model: Classifier, path: str | os.PathLike, **meta: Any) -> Path:
    """Save ``model`` as ``path.safetensors`` + ``path.json``; returns the weights path.

    ``meta`` (dataset, classes, training summary...) goes into the sidecar. Both files are
    written atomically; the sidecar last, so a sidecar always describes complete weights.
    """
    if not isinstance(model, Classifier) or model.arch is None:
        raise TypeError("save_model needs an advscale Classifier built by name (build_classifier)")
    weights, sidecar = checkpoint_paths(path)
    _write_state(model, weights)
    atomic_write_json(
        sidecar,
        {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "arch": model.arch,
            "arch_kwargs": model.arch_kwargs,
            "mean": model.mean,
            "std": model.std,
            "input_size": list(model.input_size) if model.input_size else None,
            **meta,
        },
    )
    return weights


def _write_state(model: nn.Module, weights: Path) -> None:
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    atomic_write(weights, lambda p: save_file(state, str(p)))


def save_weights(model: nn.Module, path: str | os.PathLike, **meta: Any) -> Path:
    """``path.safetensors`` + ``path.json``; returns the weights path.

    A Classifier built by name becomes an advscale checkpoint (:func:`save_model`); any other
    module its plain state dict, with a sidecar saying what it is.
    """
    if isinstance(model, Classifier) and model.arch is not None:
        return save_model(model, path, **meta)
    weights, sidecar = checkpoint_paths(path)
    _write_state(model, weights)
    atomic_write_json(
        sidecar, {"format": STATE_DICT_FORMAT, "module": type(model).__name__, **meta}
    )
    return weights


def load_weights(model: nn.Module, path: str | os.PathLike) -> None:
    """Load the weights saved by :func:`save_weights` at ``path`` into ``model`` (strict)."""
    weights, _ = checkpoint_paths(path)
    state = read_weights(weights)
    check_state_dict(model, state, source=str(weights))
    model.load_state_dict(state)


def read_sidecar(path: str | os.PathLike) -> dict[str, Any]:
    """The JSON sidecar of a checkpoint, validated."""
    _, sidecar = checkpoint_paths(path)
    if not sidecar.exists():
        raise CheckpointError(
            f"{sidecar}: checkpoint sidecar not found (expected next to the .safetensors file)"
        )
    meta = read_structured(sidecar, "checkpoint sidecar", error=CheckpointError, fmt="json")
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(
            f"{sidecar}: not an advscale checkpoint sidecar (format="
            f"{meta.get('format') if isinstance(meta, dict) else None!r})"
        )
    for key in ("arch", "mean", "std"):
        if key not in meta:
            raise CheckpointError(f"{sidecar}: missing key {key!r}")
    for key, (ok, expected) in SIDECAR_TYPES.items():
        if key in meta and not ok(meta[key]):
            raise CheckpointError(
                f"{sidecar}: {key} must be {expected}, got {type(meta[key]).__name__} "
                f"{meta[key]!r:.60}"
            )
    if meta.get("version", 0) > FORMAT_VERSION:
        raise CheckpointError(
            f"{sidecar}: checkpoint version {meta['version']} is newer than this advscale reads"
        )
    return meta


def _numbers(v: Any) -> bool:
    return isinstance(v, list) and all(
        isinstance(x, (int, float)) and not isinstance(x, bool) for x in v
    )


#: What each sidecar field must be: (check, description for the error).
SIDECAR_TYPES: dict[str, tuple[Any, str]] = {
    "version": (lambda v: isinstance(v, int) and not isinstance(v, bool), "an integer"),
    "arch": (lambda v: isinstance(v, str), "an architecture name"),
    "arch_kwargs": (lambda v: v is None or isinstance(v, dict), "a mapping"),
    "mean": (lambda v: _numbers(v) and len(v) > 0, "a list of numbers"),
    "std": (lambda v: _numbers(v) and len(v) > 0, "a list of numbers"),
    "input_size": (
        lambda v: v is None or (isinstance(v, int) and not isinstance(v, bool)) or _numbers(v),
        "null, an integer or a list of integers",
    ),
    "classes": (
        lambda v: v is None or (isinstance(v, list) and all(isinstance(c, str) for c in v)),
        "null or a list of class names",
    ),
}


def load_model(path: str | os.PathLike, device: str | torch.device = "cpu") -> Classifier:
    """Load an advscale checkpoint as a ready model in eval mode.

    The model takes images in [0, 1] (N, C, H, W) and returns logits, so any attack library can
    use it.

    Example:
        >>> model = load_model("runs/demo/models/baseline")  # doctest: +SKIP
    """
    weights, _ = checkpoint_paths(path)
    meta = read_sidecar(path)
    try:
        model = build_classifier(
            meta["arch"],
            meta.get("arch_kwargs") or {},
            meta["mean"],
            meta["std"],
            meta.get("input_size"),
        )
    except ValueError as e:
        raise CheckpointError(f"{checkpoint_paths(path)[1]}: {e}") from None
    state = read_weights(weights)
    check_state_dict(model, state, source=str(weights))
    model.load_state_dict(state)
    model.meta = meta  # type: ignore[attr-defined]
    return model.to(device).eval()
