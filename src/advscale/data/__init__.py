"""Datasets as uint8 tensors in memory, served as float [0, 1] batches.

Example:
    >>> from advscale.data import load_dataset
    >>> train = load_dataset("fashion-mnist", "train")  # doctest: +SKIP
"""

from __future__ import annotations

import os

from advscale.data.base import BatchLoader, DataError, ImageDataset, to_float
from advscale.data.fashion_mnist import find_data_dir, load_fashion_mnist

DATASETS = ("fashion-mnist",)


def load_dataset(
    name: str, split: str = "train", data_dir: str | os.PathLike | None = None
) -> ImageDataset:
    """Load dataset ``name`` split ``split`` (see ``DATASETS``)."""
    if name == "fashion-mnist":
        return load_fashion_mnist(split, data_dir)
    raise DataError(f"unknown dataset {name!r}; allowed: {', '.join(DATASETS)}")


__all__ = [
    "DATASETS",
    "BatchLoader",
    "DataError",
    "ImageDataset",
    "find_data_dir",
    "load_dataset",
    "load_fashion_mnist",
    "to_float",
]
