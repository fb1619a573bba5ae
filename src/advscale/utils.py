"""Small shared helpers: environment capture, devices and seeding; file helpers from
:mod:`advscale.files`."""

from __future__ import annotations

import os
import platform
import random
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch

from advscale.errors import UserError
from advscale.files import (  # noqa: F401 - the names callers import from here
    atomic_write,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    check_writable,
    read_json,
    read_structured,
)


@contextmanager
def eval_mode(model: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """Put ``model`` in eval mode, then give every submodule back its own mode.

    ``model.train(was_training)`` would put every submodule in that one mode, turning on a
    batch norm the user had frozen in eval mode inside a training model.
    """
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, training in modes:
            m.training = training


def set_submodule(model: torch.nn.Module, name: str, module: torch.nn.Module) -> None:
    """Put ``module`` in place of ``model``'s submodule ``name`` (dotted, as in named_modules)."""
    parent, _, attr = name.rpartition(".")
    setattr(model.get_submodule(parent), attr, module)


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """``None``/``"auto"`` picks CUDA when available, else CPU.

    Raises:
        UserError: a device name torch does not know, or a CUDA device this machine lacks.
    """
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise UserError(
            f"device {str(device)!r}: not a device name (auto, cpu, cuda, cuda:N, mps)"
        ) from None
    if dev.type == "cuda" and (
        not torch.cuda.is_available() or (dev.index or 0) >= torch.cuda.device_count()
    ):
        have = torch.cuda.device_count() if torch.cuda.is_available() else 0
        raise UserError(
            f"device {str(device)!r}: this machine has {have} CUDA device(s); use cpu or auto"
        )
    return dev


def seed_everything(seed: int, deterministic: bool = False) -> None:
    """Seed Python, NumPy and torch; with ``deterministic`` also ask torch for deterministic kernels."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")


def environment_info(device: torch.device | str | None = None) -> dict[str, Any]:
    """Versions and hardware behind a number, recorded in every results file."""
    from advscale import __version__

    info: dict[str, Any] = {
        "advscale": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "platform": platform.platform(),
        "cpu": _cpu_name(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": str(device) if device is not None else "cpu",
    }
    if torch.cuda.is_available():
        info["cuda"] = torch.version.cuda
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
