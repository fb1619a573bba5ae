"""CIFAR-10 from its binary (``cifar-10-batches-bin``) or python (``cifar-10-batches-py``) release.

The python release is a set of pickles; they are read with an unpickler that only rebuilds
plain containers and numpy arrays, so a tampered file cannot run code.
"""

from __future__ import annotations

import io
import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch

from advscale.data.base import DataError, ImageDataset, data_roots

try:  # numpy >= 2 moved numpy.core to numpy._core; older pickles still name numpy.core.
    from numpy._core import multiarray as _multiarray
except ImportError:  # pragma: no cover - numpy 1.x
    from numpy.core import multiarray as _multiarray

CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2470, 0.2435, 0.2616)
RECORD = 3 * 32 * 32
BIN_DIR, PY_DIR = "cifar-10-batches-bin", "cifar-10-batches-py"
SPLIT_FILES = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}
HOW_TO_GET = (
    "Download the binary or python version from https://www.cs.toronto.edu/~kriz/cifar.html, "
    "unpack it into DIR and pass --data-dir DIR (or set ADVSCALE_DATA=DIR)."
)


def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    # Python 3 writes bytes as _codecs.encode(str, "latin1") in protocol-2 pickles.
    if encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError(f"refusing _codecs.encode with encoding {encoding!r}")
    return text.encode("latin1")


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that rebuilds only dicts, lists, strings, bytes, numbers and numpy arrays.

    ``find_class`` refuses every global except numpy's array-reconstruction functions; a
    pickle asking for anything else (``os.system``, ``builtins.eval``, ...) raises
    ``pickle.UnpicklingError`` before any code runs.
    """

    def find_class(self, module: str, name: str) -> Any:
        key = (module, name)
        if key == ("numpy", "ndarray"):
            return np.ndarray
        if key == ("numpy", "dtype"):
            return np.dtype
        if module in ("numpy.core.multiarray", "numpy._core.multiarray") and name in (
            "_reconstruct",
            "scalar",
        ):
            return getattr(_multiarray, name)
        if module in ("numpy.core.numeric", "numpy._core.numeric") and name == "_frombuffer":
            return _frombuffer
        if key == ("_codecs", "encode"):
            return _latin1_encode
        raise pickle.UnpicklingError(
            f"refusing to load {module}.{name}: not an array or plain data"
        )


def _frombuffer(buf: bytes, dtype: np.dtype, shape: tuple[int, ...], order: str) -> np.ndarray:
    # What numpy pickles arrays as with protocol 5; rebuilt here without importing its privates.
    if not isinstance(dtype, np.dtype) or dtype.hasobject:
        raise pickle.UnpicklingError(f"refusing array of dtype {dtype!r}")
    arr = np.frombuffer(buf, dtype=dtype)
    return arr.reshape(shape, order="F" if order == "F" else "C")


def safe_unpickle(path: str | os.PathLike) -> Any:
    """Load a pickle of plain data and numpy arrays from ``path``; refuse anything else."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    try:
        return RestrictedUnpickler(io.BytesIO(data), encoding="bytes").load()
    except pickle.UnpicklingError as e:
        raise DataError(f"{path}: unsafe or corrupt pickle: {e}") from None
    except (EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError) as e:
        raise DataError(f"{path}: corrupt pickle ({type(e).__name__}: {e})") from None


def find_cifar_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """The ``cifar-10-batches-bin`` or ``cifar-10-batches-py`` directory (binary preferred).

    Looks in ``data_dir`` (only there when given), else ``$ADVSCALE_DATA``, else
    ``/usr/share/datasets``; each may be the batches directory itself, contain it, or contain
    ``cifar-10/`` holding it.
    """
    roots = data_roots(data_dir)
    for _, root in roots:
        for base in (root, root / "cifar-10", root / "cifar10"):
            if base.name in (BIN_DIR, PY_DIR) and base.is_dir():
                return base
            for sub in (BIN_DIR, PY_DIR):
                if (base / sub).is_dir():
                    return base / sub
    if data_dir is not None and not Path(data_dir).expanduser().is_dir():
        raise DataError(
            f"{Path(data_dir).expanduser()}: data directory does not exist. {HOW_TO_GET}"
        )
    searched = ", ".join(f"{label} {root}" for label, root in roots)
    raise DataError(
        f"CIFAR-10 ({BIN_DIR}/ or {PY_DIR}/) not found (searched {searched}). {HOW_TO_GET}"
    )


def read_binary_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One binary batch: records of 1 label byte + 3072 pixel bytes (R, G, B planes of 32x32)."""
    try:
        raw = np.fromfile(path, dtype=np.uint8)
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    if raw.size == 0 or raw.size % (RECORD + 1):
        raise DataError(
            f"{path}: wrong size {raw.size} bytes; a CIFAR-10 binary batch holds records of "
            f"{RECORD + 1} bytes (1 label + 3072 pixels)"
        )
    records = raw.reshape(-1, RECORD + 1)
    return records[:, 1:].reshape(-1, 3, 32, 32), records[:, 0].astype(np.int64)


def read_python_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One python batch: a pickled dict with ``data`` (N, 3072) uint8 and ``labels`` (N,)."""
    batch = safe_unpickle(path)
    if not isinstance(batch, dict):
        raise DataError(f"{path}: expected a pickled dict, got {type(batch).__name__}")
    batch = {k.decode() if isinstance(k, bytes) else k: v for k, v in batch.items()}
    if "data" not in batch or "labels" not in batch:
        raise DataError(f"{path}: batch lacks 'data' or 'labels' (keys: {sorted(batch)})")
    data, labels = batch["data"], batch["labels"]
    if (
        not isinstance(data, np.ndarray)
        or data.dtype != np.uint8
        or data.ndim != 2
        or data.shape[1] != RECORD
    ):
        shape = getattr(data, "shape", None)
        raise DataError(f"{path}: 'data' must be a uint8 array of shape (N, {RECORD}), got {shape}")
    try:
        labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    except (TypeError, ValueError):
        raise DataError(f"{path}: 'labels' is not a list of integers") from None
    if len(labels) != len(data):
        raise DataError(f"{path}: {len(data)} images but {len(labels)} labels")
    return data.reshape(-1, 3, 32, 32), labels


def _class_names(root: Path) -> list[str]:
    meta_txt, meta_py = root / "batches.meta.txt", root / "batches.meta"
    names: list[str] = []
    if root.name == BIN_DIR and meta_txt.is_file():
        names = [line.strip() for line in meta_txt.read_text().splitlines() if line.strip()]
    elif root.name == PY_DIR and meta_py.is_file():
        meta = safe_unpickle(meta_py)
        raw = meta.get(b"label_names", []) if isinstance(meta, dict) else []
        names = [n.decode() if isinstance(n, bytes) else str(n) for n in raw]
    if names and len(names) != len(CLASSES):
        where = meta_txt if root.name == BIN_DIR else meta_py
        raise DataError(f"{where}: lists {len(names)} class names, expected {len(CLASSES)}")
    return names or list(CLASSES)


def load_cifar10(split: str = "train", data_dir: str | os.PathLike | None = None) -> ImageDataset:
    """CIFAR-10 ``split`` ("train": 50k, "test": 10k) as a uint8 ImageDataset of 3x32x32."""
    if split not in SPLIT_FILES:
        raise DataError(f"unknown split {split!r} for cifar10; allowed: {', '.join(SPLIT_FILES)}")
    root = find_cifar_dir(data_dir)
    binary = root.name == BIN_DIR
    images, labels = [], []
    for stem in SPLIT_FILES[split]:
        path = root / (stem + ".bin" if binary else stem)
        if not path.is_file():
            raise DataError(f"{path}: CIFAR-10 batch missing. {HOW_TO_GET}")
        x, y = read_binary_batch(path) if binary else read_python_batch(path)
        if len(y) and (y.min() < 0 or y.max() >= len(CLASSES)):
            raise DataError(
                f"{path}: label {int(y.max() if y.max() >= len(CLASSES) else y.min())} out of range 0-9"
            )
        images.append(x)
        labels.append(y)
    return ImageDataset(
        torch.from_numpy(np.concatenate(images)),
        torch.from_numpy(np.concatenate(labels)),
        _class_names(root),
        name=f"cifar10/{split}",
        mean=MEAN,
        std=STD,
    )
