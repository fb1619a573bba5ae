"""Writers of small files in the real Fashion-MNIST IDX format, for the data tests."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np

from advscale.data.fashion_mnist import FILES


def idx_bytes(array: np.ndarray, magic: bytes | None = None) -> bytes:
    """The IDX encoding of a uint8 array (big-endian dims after a 4-byte magic number)."""
    head = magic if magic is not None else bytes([0, 0, 0x08, array.ndim])
    return head + struct.pack(f">{array.ndim}I", *array.shape) + array.astype(np.uint8).tobytes()


def write_idx_gz(path: Path, array: np.ndarray, magic: bytes | None = None) -> Path:
    path.write_bytes(gzip.compress(idx_bytes(array, magic), mtime=0))
    return path


def write_fashion_dir(d: Path, n_train: int = 30, n_test: int = 20, seed: int = 0) -> Path:
    """A Fashion-MNIST directory with random images and labels cycling through 0..9."""
    rng = np.random.default_rng(seed)
    d.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("test", n_test)):
        img_name, lab_name = FILES[split]
        write_idx_gz(d / img_name, rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
        write_idx_gz(d / lab_name, (np.arange(n) % 10).astype(np.uint8))
    return d
