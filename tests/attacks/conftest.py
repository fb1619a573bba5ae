"""A tiny small_cnn trained for a few seconds on real Fashion-MNIST, shared by the attack tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest
import torch
from torch import Tensor
from torch.nn import functional as F

from advscale.data import ImageDataset
from advscale.models import Classifier, build_classifier

TRAIN_N, TEST_N = 3000, 500


@dataclass
class Trained:
    """A trained model and a held-out batch it classifies with ~73% accuracy."""

    model: Classifier
    x: Tensor
    y: Tensor

    @property
    def clean_correct(self) -> Tensor:
        with torch.no_grad():
            return self.model(self.x).argmax(1) == self.y


def train_tiny(train: ImageDataset, epochs: int = 1, seed: int = 0) -> Classifier:
    """small_cnn of width 0.5, Adam, batch 64: one epoch of 3000 images takes ~4 s on two
    cores and reaches ~73% test accuracy, enough for every attack to have something to break."""
    torch.manual_seed(seed)
    x, y = train.tensors()
    model = build_classifier(
        "small_cnn", {"num_classes": 10, "in_channels": 1, "width": 0.5}, train.mean, train.std
    )
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(len(x))
        for i in range(0, len(x), 64):
            b = perm[i : i + 64]
            loss = F.cross_entropy(model(x[b]), y[b])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    model.eval()
    for p in model.parameters():
        p.grad = None
    return model


@contextmanager
def one_thread() -> Iterator[None]:
    """Run torch on one thread: batches here are tiny, and on a shared machine a second
    thread mostly waits at barriers (measured 20-50x slower under load, no faster idle)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    with one_thread():
        yield


@pytest.fixture(scope="session")
def trained(fmnist: Callable[..., ImageDataset]) -> Trained:
    """The session's tiny model (eval mode) and TEST_N stratified test images."""
    with one_thread():
        model = train_tiny(fmnist("train", n=TRAIN_N, seed=0))
    x, y = fmnist("test", n=TEST_N, seed=1).tensors()
    return Trained(model, x, y)
