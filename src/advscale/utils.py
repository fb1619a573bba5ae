"""Small shared helpers: atomic file writes, environment capture, devices and seeding."""

from __future__ import annotations

import json
import os
import platform
import random
import secrets
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

from advscale.errors import UserError


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Write ``path`` so that it is either the old file or the complete new one, never half.

    ``write`` receives a temporary path in the same directory; it is fsynced and renamed over
    ``path`` only after ``write`` returns.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp_path = path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp"
    # Created with the mode a plain open() gives (0666 less the umask, applied by the kernel).
    os.close(os.open(tmp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    try:
        write(tmp_path)
        with open(tmp_path, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp_path, path)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()
    return path


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Atomically write ``data`` to ``path``."""
    return atomic_write(path, lambda p: p.write_bytes(data))


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Atomically write UTF-8 ``text`` to ``path``."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Atomically write ``obj`` as indented JSON."""
    return atomic_write_text(
        path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n"
    )


def check_writable(path: str | os.PathLike, what: str, *, directory: bool = False) -> Path:
    """Refuse, before any work starts, an output ``path`` that could not be written.

    ``path`` is a file (or, with ``directory``, a directory) that may not exist yet: its nearest
    existing ancestor must be a directory in which a file can be created, and an existing
    ``path`` must be of the right kind. Nothing is left behind. ``what`` names the output in
    the error ("--out", "run directory").

    Raises:
        UserError: naming ``what``, ``path`` and the reason.
    """
    path = Path(path)
    if path.exists() and path.is_dir() != directory:
        kind = "a directory" if path.is_dir() else "a file"
        raise UserError(
            f"{what} {path}: is {kind}, expected a {'directory' if directory else 'file'}"
        )
    parent = path if directory and path.exists() else path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise UserError(f"{what} {path}: cannot be created ({parent} is not a directory)")
    try:
        fd, probe = tempfile.mkstemp(prefix=".advscale-probe-", dir=parent)
    except OSError as e:
        raise UserError(f"{what} {path}: not writable ({parent}: {e.strerror})") from None
    os.close(fd)
    os.unlink(probe)
    return path


def read_structured(
    path: str | os.PathLike,
    what: str,
    *,
    error: type[Exception] | None = None,
    fmt: str | None = None,
) -> Any:
    """The parsed content of the JSON or YAML file ``path``; a missing file or a parse error
    becomes one ``error`` (default :class:`advscale.errors.UserError`) naming the file.

    ``what`` names the file in the error ("sweep file", "results file"). ``fmt`` is "json" or
    "yaml"; by default a ``.json`` suffix means JSON and anything else YAML. An empty YAML file
    reads as None.

    Example:
        >>> read_structured("configs/pgd.yaml", "config file")["recipe"]  # doctest: +SKIP
    """
    error = error or UserError
    path = Path(path)
    fmt = fmt or ("json" if path.suffix.lower() == ".json" else "yaml")
    try:
        text = path.read_text()
    except (FileNotFoundError, IsADirectoryError):
        raise error(f"{path}: no such {what}") from None
    if fmt == "json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as e:
            raise error(f"{path}: not valid JSON ({e})") from None
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        what = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise error(f"{path}: not valid YAML ({where}{what})") from None


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, torch.Tensor):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")


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
