"""Fashion-MNIST from its IDX .gz files."""

from __future__ import annotations

import gzip
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import torch

from advscale.data.base import SYSTEM_DATA_ROOT, DataError, ImageDataset, data_roots

CLASSES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]
FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
SIZES = {"train": 60000, "test": 10000}
SYSTEM_DIR = SYSTEM_DATA_ROOT / "fashion-mnist"
# Statistics of the training set, for the model's Normalize layer.
MEAN, STD = (0.2860,), (0.3530,)
HOW_TO_GET = (
    "Get it with `sudo apt-get install dataset-fashion-mnist` (installs to "
    f"{SYSTEM_DIR}) or `advscale data fetch fashion-mnist --to DIR`, then pass --data-dir DIR "
    "or set ADVSCALE_DATA=DIR."
)


def _has_all(d: Path) -> bool:
    return all((d / f).is_file() for pair in FILES.values() for f in pair)


def find_data_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """The directory holding the four Fashion-MNIST .gz files.

    Looks in ``data_dir`` (only there when given), else ``$ADVSCALE_DATA``, else
    ``/usr/share/datasets/fashion-mnist``; each place may hold the files directly or in a
    ``fashion-mnist/`` subdirectory.
    """
    roots = data_roots(data_dir)
    for _, root in roots:
        for d in (root, root / "fashion-mnist"):
            if _has_all(d):
                return d
    needed = [f for pair in FILES.values() for f in pair]
    if data_dir is not None:
        d = roots[0][1]
        if not d.is_dir():
            raise DataError(f"{d}: data directory does not exist. {HOW_TO_GET}")
        missing = [f for f in needed if not (d / f).is_file()]
        raise DataError(f"{d}: Fashion-MNIST files missing: {', '.join(missing)}. {HOW_TO_GET}")
    searched = ", ".join(f"{label} {root}" for label, root in roots)
    raise DataError(f"Fashion-MNIST not found (searched {searched}). {HOW_TO_GET}")


def read_idx(path: str | os.PathLike, expected_ndim: int) -> np.ndarray:
    """Read an IDX file of unsigned bytes (gzipped when named ``*.gz``); errors name the file."""
    path = Path(path)
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a directory, expected an IDX file") from None
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f"{path}: corrupt or truncated gzip file ({e})") from None
    if len(raw) < 4:
        raise DataError(f"{path}: too short to be an IDX file ({len(raw)} bytes)")
    zero, dtype_code, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or dtype_code != 0x08:
        raise DataError(
            f"{path}: wrong IDX magic number 0x{raw[:4].hex()} (expected unsigned-byte IDX)"
        )
    if ndim != expected_ndim:
        raise DataError(f"{path}: IDX file has {ndim} dimensions, expected {expected_ndim}")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: truncated IDX header")
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    count = int(np.prod(shape))
    if len(raw) - header != count:
        raise DataError(
            f"{path}: IDX header says shape {shape} ({count} bytes) but the file holds {len(raw) - header}"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def load_fashion_mnist(
    split: str = "train", data_dir: str | os.PathLike | None = None
) -> ImageDataset:
    """Fashion-MNIST ``split`` ("train": 60k, "test": 10k) as a uint8 ImageDataset of 1x28x28."""
    if split not in FILES:
        raise DataError(f"unknown split {split!r} for fashion-mnist; allowed: {', '.join(FILES)}")
    root = find_data_dir(data_dir)
    img_file, lab_file = (root / f for f in FILES[split])
    images = read_idx(img_file, 3)
    labels = read_idx(lab_file, 1)
    if images.shape[1:] != (28, 28):
        raise DataError(
            f"{img_file}: images are {images.shape[1]}x{images.shape[2]}, expected 28x28"
        )
    if len(images) != len(labels):
        raise DataError(
            f"{img_file} has {len(images)} images but {lab_file} has {len(labels)} labels"
        )
    if len(images) == 0:
        raise DataError(f"{img_file}: holds no images")
    if labels.max() >= len(CLASSES):
        raise DataError(f"{lab_file}: label {int(labels.max())} out of range 0-{len(CLASSES) - 1}")
    return ImageDataset(
        torch.from_numpy(images.copy()).unsqueeze(1),
        torch.from_numpy(labels.astype(np.int64)),
        list(CLASSES),
        name=f"fashion-mnist/{split}",
        mean=MEAN,
        std=STD,
    )
