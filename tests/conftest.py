"""Shared fixtures: real Fashion-MNIST (skipped with instructions when absent), fixed seeds."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torch.nn import functional as F

from advscale.data import BatchLoader, DataError, ImageDataset, find_data_dir, load_fashion_mnist
from advscale.models import Classifier, build_classifier
from advscale.utils import seed_everything

# The tests' models and batches are tiny: a second intra-op thread was no faster on an idle
# two-core machine and 5-50x slower on a loaded one (threads spin waiting for a core).
torch.set_num_threads(1)

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


def train_tiny(
    train: ImageDataset, *, width: float = 0.5, epochs: int = 1, seed: int = 0
) -> Classifier:
    """A small_cnn trained with Adam (lr 3e-3, batch 64) on ``train``, in eval mode, no grads.

    Width 0.5 and one epoch of 2000-3000 Fashion-MNIST images take a few seconds and reach
    ~70-80% test accuracy: enough misclassified, broken and robust examples for every test.
    """
    torch.manual_seed(seed)
    model = build_classifier(
        "small_cnn", {"num_classes": 10, "in_channels": 1, "width": width}, train.mean, train.std
    )
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for epoch in range(epochs):
        loader = BatchLoader(train, 64, seed=seed)
        loader.set_epoch(epoch)
        for x, y in loader:
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(model(x), y).backward()
            opt.step()
    for p in model.parameters():
        p.grad = None
    return model.eval()


@pytest.fixture(scope="session")
def tiny_trainer() -> Callable[..., Classifier]:
    """:func:`train_tiny` as a fixture, for the folders that train their own tiny models."""
    return train_tiny
