"""Tiny real models trained for a few seconds on a Fashion-MNIST subset, shared by the analysis tests."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch.nn import functional as F

from advscale.data import BatchLoader, ImageDataset
from advscale.models import Classifier, build_classifier


@pytest.fixture(autouse=True)
def _one_thread():
    """These models are tiny: one thread is as fast, and far faster when other processes share the cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def train_tiny(train: ImageDataset, seed: int, width: float = 0.25, epochs: int = 2) -> Classifier:
    """A small CNN trained with Adam on ``train``; about 70-80% accurate on Fashion-MNIST."""
    torch.manual_seed(seed)
    model = build_classifier(
        "small_cnn", {"num_classes": 10, "in_channels": 1, "width": width}, train.mean, train.std
    )
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(epochs):
        for x, y in BatchLoader(train, 64, seed=seed):
            opt.zero_grad()
            F.cross_entropy(model(x), y).backward()
            opt.step()
    return model.eval()


@pytest.fixture(scope="session")
def tiny_models(fmnist) -> Callable[[int], Classifier]:
    """``tiny_models(seed)``: a trained tiny model, cached per seed for the session."""
    cache: dict[int, Classifier] = {}
    train = fmnist("train", n=2000, seed=1)

    def get(seed: int) -> Classifier:
        if seed not in cache:
            cache[seed] = train_tiny(train, seed)
        return cache[seed]

    return get
