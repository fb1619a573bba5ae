"""Training checkpoints: weights as safetensors, everything else as plain tensors and numbers.

A checkpoint is a directory ``checkpoints/<tag>/`` holding ``model.safetensors`` + ``model.json``
(an advscale model checkpoint, loadable with ``advscale.load_model``) and ``state.pt``: optimizer,
scheduler, scaler, random states, counters and guard state, saved with ``torch.save`` of plain
containers only and read back with ``torch.load(weights_only=True)``. The directory is written
under a temporary name and renamed into place, so a run killed at any moment leaves the previous
checkpoint whole.
"""

from __future__ import annotations

import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from advscale import models
from advscale.errors import UserError
from advscale.models import CheckpointError
from advscale.train.distributed import gather_objects
from advscale.train.step import Optimization
from advscale.utils import atomic_write, read_json

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


class NonFiniteWeightsError(UserError):
    """A parameter or buffer holds NaN or ±inf: nothing is saved, the last checkpoint stays."""


def nonfinite_tensors(model: nn.Module) -> list[str]:
    """Names of the floating-point parameters and buffers of ``model`` that are not all finite."""
    named = [*unwrap(model).named_parameters(), *unwrap(model).named_buffers()]
    return [
        n for n, t in named if t.is_floating_point() and not bool(torch.isfinite(t.detach()).all())
    ]


def require_finite(model: nn.Module, *, step: int, last: Path | None) -> None:
    """Refuse to save weights that are not finite, so that every checkpoint is a good one.

    Raises:
        NonFiniteWeightsError: naming the tensors, the step and the checkpoint kept (``last``).
    """
    bad = nonfinite_tensors(model)
    if not bad:
        return
    more = f" and {len(bad) - 3} more" if len(bad) > 3 else ""
    kept = f"the last good checkpoint ({last}) is intact" if last else "no checkpoint was written"
    raise NonFiniteWeightsError(
        f"training stopped: non-finite weights ({', '.join(bad[:3])}{more}) after step {step}; "
        f"{kept}. Lower optimizer.lr or add schedule.warmup."
    )


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
    try:
        save_weights(model, tmp / WEIGHTS, step=state.get("step"), **meta)
        atomic_write(tmp / STATE_FILE, lambda p: torch.save(state, p))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)  # a full disk gets its space back
        raise
    if final.exists():
        if old.exists():
            shutil.rmtree(old)
        final.rename(old)
    tmp.rename(final)
    if old.exists():
        shutil.rmtree(old)
    return final


def training_state(
    opt: Optimization,
    guard: Any,
    progress: dict[str, Any],
    epoch_sums: list[float],
    selector: Any = None,
) -> dict[str, Any]:
    """Everything a resume needs besides the (raw) weights: the trainer's ``progress``,
    optimizer, schedule, scaler, weights' moving average, ``guard`` and ``selector`` (None
    without one) states, and each process's random states, recipe state and ``epoch_sums``
    (every process must call it)."""
    mine = {"rng": rng_state(), "recipe": opt.recipe.state_dict(), "epoch_sums": list(epoch_sums)}
    return {
        **progress,
        "world_size": opt.dist.world_size,
        "optimizer": opt.optimizer.state_dict(),
        "scheduler": opt.scheduler.state_dict(),
        "scaler": opt.scaler.state_dict() if opt.scaler is not None else None,
        "ranks": gather_objects(mine, opt.dist),
        "guard": guard.state_dict() if guard is not None else None,
        "ema": opt.ema.state_dict() if opt.ema is not None else None,
        "select": selector.state_dict() if selector is not None else None,
    }


def load_training_state(
    path: Path, model: nn.Module, opt: Optimization, guard: Any, selector: Any = None
) -> dict:
    """Load checkpoint ``path`` into ``model``, ``opt``'s parts, ``guard``, ``selector`` and
    this process's random states; return the state (for the progress counters).

    Raises:
        UserError: the checkpoint was written by another number of processes.
    """
    state = load_checkpoint(path, model)
    if state["world_size"] != opt.dist.world_size:
        raise UserError(
            f"--resume: {path} was written by {state['world_size']} process(es), now "
            f"{opt.dist.world_size}; resume with the same number of processes"
        )
    opt.optimizer.load_state_dict(state["optimizer"])
    opt.scheduler.load_state_dict(state["scheduler"])
    if opt.scaler is not None and state.get("scaler"):
        opt.scaler.load_state_dict(state["scaler"])
    mine = state["ranks"][opt.dist.rank]
    set_rng_state(mine["rng"])
    opt.recipe.load_state_dict(mine["recipe"])
    if guard is not None and state.get("guard"):
        guard.load_state_dict(state["guard"])
    if opt.ema is not None:
        if not state.get("ema"):
            raise UserError(f"--resume: {path} holds no moving average of the weights (ema:)")
        opt.ema.load_state_dict(state["ema"])
    if selector is not None and state.get("select"):
        selector.load_state_dict(state["select"])
    return state


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
    sidecar = read_json(path / f"{WEIGHTS}.json", "checkpoint sidecar", error=CheckpointError)
    step = sidecar.get("step") if isinstance(sidecar, dict) else None
    if step != state.get("step"):
        raise CheckpointError(
            f"{path}: weights (step {step}) and state (step {state.get('step')}) disagree"
        )
    return state
