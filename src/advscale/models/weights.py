"""Weights files: one reader with one trust policy, and one way to load tensors into a network.

``.safetensors`` files and plain state dicts saved with ``torch.save`` are read without running
any code (``torch.load(weights_only=True)``). A file that needs full unpickling (custom classes,
whole pickled modules) is refused with the reason, unless the caller passes ``trust=True``:
trust is a decision of the call site (``--trust-checkpoint``), never of a file.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from torch import nn

from advscale.errors import UserError

#: Entries under which training scripts commonly nest the state dict in a ``.pt`` file.
NESTED_KEYS = ("state_dict", "model", "model_state_dict", "module")
#: Prefixes wrappers add to every key (DataParallel/DDP, torch.compile, Lightning-style holders).
WRAPPER_PREFIXES = ("module.", "_orig_mod.", "model.")


class CheckpointError(UserError):
    """A checkpoint that cannot be loaded; the message names the file and what is wrong."""


def read_weights(path: str | os.PathLike, *, trust: bool = False) -> dict[str, torch.Tensor]:
    """Tensors of a ``.safetensors`` file, or of a ``.pt``/``.pth``/``.bin`` state dict.

    A ``torch.save`` file is read with ``torch.load(weights_only=True)``; a dict holding the
    state dict under ``state_dict``/``model``/``model_state_dict``/``module`` is unwrapped and
    non-tensor entries are dropped. A file that needs full unpickling is refused with the reason
    unless ``trust`` is set (unpickling runs code stored in the file).

    Raises:
        CheckpointError: missing, unreadable or refused file, or one holding no tensors.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise CheckpointError(f"{path}: no such weights file")
    if path.suffix == ".safetensors":
        try:
            return load_file(str(path))
        except Exception as e:  # safetensors raises its own error types
            raise CheckpointError(f"{path}: not a readable safetensors file ({e})") from None
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch raises several types for a refused pickle
        if not trust:
            raise CheckpointError(
                f"{path}: refused to load: it is not a plain tensor file; it holds objects that "
                f"only full unpickling can rebuild{_unpickling_reason(e)}, and unpickling runs "
                "code stored in the file. Only if you trust where it comes from, pass trust=True "
                "(command line: --trust-checkpoint)."
            ) from None
        obj = torch.load(path, map_location="cpu", weights_only=False)
    return _tensors(obj, path)


def _tensors(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    if isinstance(obj, nn.Module):
        obj = obj.state_dict()
    for key in NESTED_KEYS:
        if isinstance(obj, dict) and isinstance(obj.get(key), (dict, nn.Module)):
            inner = obj[key]
            obj = inner.state_dict() if isinstance(inner, nn.Module) else inner
            break
    if not isinstance(obj, dict):
        raise CheckpointError(
            f"{path}: expected a dict of tensors (a state_dict), got {type(obj).__name__}"
        )
    tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise CheckpointError(f"{path}: expected a dict of tensors (a state_dict); it holds none")
    return tensors


def _unpickling_reason(err: BaseException) -> str:
    """The line of torch's weights-only error that names the object it would not rebuild."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(err))
    for line in text.splitlines():
        if "Unsupported global" in line or "Unsupported operand" in line:
            reason = line.strip().removeprefix("WeightsUnpickler error: ").split(". ")[0]
            return f" ({reason})"
    return f" ({type(err).__name__}: {text.splitlines()[0] if text else ''})"


def strip_prefixes(state: dict[str, torch.Tensor], own_keys: set[str]) -> dict[str, torch.Tensor]:
    """Drop wrapper prefixes (``module.``, ``_orig_mod.``, ``model.``) when the keys don't fit."""
    for prefix in WRAPPER_PREFIXES:
        if state and not (set(state) & own_keys) and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix) :]: v for k, v in state.items()}
    return state


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


def load_state(
    net: nn.Module, state: dict[str, torch.Tensor], source: str, skip: str = ""
) -> dict[str, Any]:
    """Load ``state`` into ``net`` strictly, after stripping wrapper prefixes.

    ``skip`` names a submodule (a classification head about to be replaced) whose tensors are
    ignored: the net keeps its own, and only the rest has to match.

    Returns:
        ``{"loaded_tensors": n, "head_in_file": bool}`` (whether the file had ``skip``'s tensors).

    Raises:
        CheckpointError: listing missing, unexpected and mis-shaped keys.
    """
    own = net.state_dict()
    state = strip_prefixes(state, set(own))
    is_skipped = lambda k: bool(skip) and (k == skip or k.startswith(skip + "."))  # noqa: E731
    body = {k: v for k, v in state.items() if not is_skipped(k)}
    full = {**{k: v for k, v in own.items() if is_skipped(k)}, **body}
    check_state_dict(net, full, source=source)
    net.load_state_dict(full)
    return {"loaded_tensors": len(body), "head_in_file": any(is_skipped(k) for k in state)}
