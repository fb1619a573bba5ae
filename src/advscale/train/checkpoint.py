"""Training checkpoints: weights as safetensors, everything else as plain tensors and numbers.

A checkpoint is a directory ``checkpoints/<tag>/`` holding ``model.safetensors`` + ``model.json``
(an advscale model checkpoint, loadable with ``advscale.load_model``) and ``state.pt``: optimizer,
scheduler, scaler, random states, counters and guard state, saved with ``torch.save`` of plain
containers only and read back with ``torch.load(weights_only=True)``. The directory is written
under a temporary name and renamed into place, so a run killed at any moment leaves the previous
checkpoint whole.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from advscale import models
from advscale.models import CheckpointError
from advscale.utils import atomic_write

STATE_FILE = "state.pt"
WEIGHTS = "model"


def unwrap(model: nn.Module) -> nn.Module:
    """The plain module inside DDP and ``torch.compile`` wrappers."""
    while True:
        if hasattr(model, "module") and isinstance(model.module, nn.Module):  # DDP
            model = model.module
        elif hasattr(model, "_orig_mod"):  # torch.compile
            model = model._orig_mod
        else:
            return model


def save_weights(model: nn.Module, path: Path, **meta: Any) -> Path:
    """:func:`advscale.models.save_weights` of the plain module inside any wrapper."""
    return models.save_weights(unwrap(model), path, **meta)


def load_weights(model: nn.Module, path: Path) -> None:
    """:func:`advscale.models.load_weights` into the plain module inside any wrapper (strict)."""
    models.load_weights(unwrap(model), path)


def rng_state() -> dict[str, Any]:
    """Python, NumPy and torch (CPU and CUDA) random states as plain data."""
    py = random.getstate()
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "python": [py[0], list(py[1]), py[2]],
        "numpy": {
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "gauss": float(np_state[4]),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = state["numpy"]
    np.random.set_state(
        ("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"])
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(
    root: Path, tag: str, model: nn.Module, state: dict[str, Any], **meta: Any
) -> Path:
    """Write ``root/tag/`` (weights + state) atomically as a directory; returns it."""
    root.mkdir(parents=True, exist_ok=True)
    final, tmp, old = root / tag, root / f".{tag}.tmp", root / f".{tag}.old"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    save_weights(model, tmp / WEIGHTS, step=state.get("step"), **meta)
    atomic_write(tmp / STATE_FILE, lambda p: torch.save(state, p))
    if final.exists():
        if old.exists():
            shutil.rmtree(old)
        final.rename(old)
    tmp.rename(final)
    if old.exists():
        shutil.rmtree(old)
    return final


def find_checkpoint(root: Path, tag: str) -> Path | None:
    """``root/tag``, or the previous copy left by a run killed between two renames."""
    for p in (root / tag, root / f".{tag}.old"):
        if (p / STATE_FILE).exists() and (p / f"{WEIGHTS}.safetensors").exists():
            return p
    return None


def load_checkpoint(path: Path, model: nn.Module) -> dict[str, Any]:
    """Load the weights of checkpoint directory ``path`` into ``model``; return its state dict."""
    load_weights(model, path / WEIGHTS)
    try:
        state = torch.load(path / STATE_FILE, map_location="cpu", weights_only=True)
    except Exception as e:
        raise CheckpointError(
            f"{path / STATE_FILE}: cannot read training state ({type(e).__name__}: {e})"
        ) from None
    sidecar = json.loads((path / f"{WEIGHTS}.json").read_text())
    if sidecar.get("step") != state.get("step"):
        raise CheckpointError(
            f"{path}: weights (step {sidecar.get('step')}) and state (step {state.get('step')}) disagree"
        )
    return state
