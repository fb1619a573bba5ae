"""Shared fixtures: real Fashion-MNIST (skipped with instructions when absent), fixed seeds."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from advscale.data import DataError, ImageDataset, find_data_dir, load_fashion_mnist
from advscale.utils import seed_everything

# The test machines share few cores; more threads only contend.
torch.set_num_threads(2)

SEED = 0


@pytest.fixture(autouse=True)
def _fixed_seed() -> None:
    """Every test starts from the same random state."""
    seed_everything(SEED)


@pytest.fixture
def seed() -> int:
    """The seed every test starts from (already applied to Python, NumPy and torch)."""
    return SEED


@pytest.fixture(scope="session")
def fmnist_dir() -> Path:
    """Directory holding the four Fashion-MNIST .gz files; skips the test when there is none."""
    try:
        return find_data_dir()
    except DataError as e:
        # The message says where it looked and how to get the data.
        pytest.skip(str(e))


@pytest.fixture(scope="session")
def fmnist(fmnist_dir: Path) -> Callable[..., ImageDataset]:
    """A function ``fmnist(split="test", n=None, seed=0)`` giving real Fashion-MNIST.

    Full splits are read once per session; ``n`` takes a class-stratified subset of that size.

    Example:
        def test_x(fmnist):
            train, test = fmnist("train", n=2000), fmnist("test", n=500)
    """
    cache: dict[str, ImageDataset] = {}

    def get(split: str = "test", n: int | None = None, seed: int = 0) -> ImageDataset:
        if split not in cache:
            cache[split] = load_fashion_mnist(split, fmnist_dir)
        return cache[split].take(n, seed=seed)

    return get
