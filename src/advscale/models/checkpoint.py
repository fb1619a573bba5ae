"""Checkpoints: safetensors weights plus a JSON sidecar; loading never unpickles."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from advscale.errors import UserError
from advscale.models.wrapper import Classifier, build_classifier
from advscale.utils import atomic_write, atomic_write_json

FORMAT = "advscale.checkpoint"
FORMAT_VERSION = 1
#: File names that say nothing about the model; its directory names it instead.
GENERIC_NAMES = ("model", "best", "last", "weights", "checkpoint", "final")
#: Directories that hold checkpoints without naming them (``runs/x/checkpoints/best``).
GENERIC_DIRS = ("checkpoints", "models")
#: Suffixes of TorchScript files (:func:`advscale.models.external.load_external_model`).
TORCHSCRIPT_SUFFIXES = (".ts", ".pt", ".pth", ".torchscript", ".jit")


class CheckpointError(UserError):
    """A checkpoint that cannot be loaded; the message names the file and what is wrong."""


def checkpoint_paths(path: str | os.PathLike) -> tuple[Path, Path]:
    """``(weights.safetensors, sidecar.json)`` for a checkpoint given with or without extension."""
    p = Path(path)
    if p.suffix in {".safetensors", ".json"}:
        p = p.with_suffix("")
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
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    atomic_write(weights, lambda p: save_file(state, str(p)))
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


def read_sidecar(path: str | os.PathLike) -> dict[str, Any]:
    """The JSON sidecar of a checkpoint, validated."""
    _, sidecar = checkpoint_paths(path)
    if not sidecar.exists():
        raise CheckpointError(
            f"{sidecar}: checkpoint sidecar not found (expected next to the .safetensors file)"
        )
    try:
        meta = json.loads(sidecar.read_text())
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{sidecar}: not valid JSON ({e})") from None
    if meta.get("format") != FORMAT:
        raise CheckpointError(
            f"{sidecar}: not an advscale checkpoint sidecar (format={meta.get('format')!r})"
        )
    if int(meta.get("version", 0)) > FORMAT_VERSION:
        raise CheckpointError(
            f"{sidecar}: checkpoint version {meta['version']} is newer than this advscale reads"
        )
    for key in ("arch", "mean", "std"):
        if key not in meta:
            raise CheckpointError(f"{sidecar}: missing key {key!r}")
    return meta


def load_state_dict_file(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Tensors from a ``.safetensors`` file, or a ``.pt/.pth`` through ``torch.load(weights_only=True)``.

    A ``.pt`` holding a dict with a ``state_dict``/``model`` entry is unwrapped.
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such weights file")
    if path.suffix == ".safetensors":
        try:
            return load_file(str(path))
        except Exception as e:  # safetensors raises its own error types
            raise CheckpointError(f"{path}: not a readable safetensors file ({e})") from None
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise CheckpointError(
            f"{path}: refused to load: it is not a plain tensor file that can be read without "
            f"unpickling arbitrary objects ({type(e).__name__}: {str(e).splitlines()[0]})"
        ) from None
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{path}: expected a dict of tensors (a state_dict)")
    return obj


def check_state_dict(
    model: nn.Module, state: dict[str, torch.Tensor], source: str = "checkpoint"
) -> None:
    """Raise CheckpointError listing missing, unexpected and mis-shaped keys, if any."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    mismatched = sorted(
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in set(own) & set(state)
        if tuple(own[k].shape) != tuple(state[k].shape)
    )
    if missing or unexpected or mismatched:
        lines = [f"{source} does not match the architecture:"]
        for label, keys in (
            ("missing", missing),
            ("unexpected", unexpected),
            ("mismatched", mismatched),
        ):
            if keys:
                shown = ", ".join(keys[:20]) + (
                    f", ... ({len(keys) - 20} more)" if len(keys) > 20 else ""
                )
                lines.append(f"  {label} keys ({len(keys)}): {shown}")
        raise CheckpointError("\n".join(lines))


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
            meta.get("arch_kwargs", {}),
            meta["mean"],
            meta["std"],
            meta.get("input_size"),
        )
    except ValueError as e:
        raise CheckpointError(f"{checkpoint_paths(path)[1]}: {e}") from None
    state = load_state_dict_file(weights)
    check_state_dict(model, state, source=str(weights))
    model.load_state_dict(state)
    model.meta = meta  # type: ignore[attr-defined]
    return model.to(device).eval()
