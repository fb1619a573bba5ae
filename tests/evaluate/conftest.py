"""A tiny small_cnn trained for a few seconds on real Fashion-MNIST, shared by the evaluation tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import torch
from eval_helpers import one_thread
from torch.nn import functional as F

from advscale.data import BatchLoader, ImageDataset
from advscale.models import Classifier, build_classifier

TRAIN_N, TEST_N = 2000, 150


def train_tiny(train: ImageDataset, seed: int = 0) -> Classifier:
    """small_cnn of width 0.5, one epoch of Adam: a few seconds on two cores, ~70-75% accurate,
    so there are both misclassified examples and robust ones to tell apart."""
    torch.manual_seed(seed)
    model = build_classifier("small_cnn", {"num_classes": 10, "in_channels": 1, "width": 0.5},
                             train.mean, train.std)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for x, y in BatchLoader(train, 64, seed=seed):
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()
    for p in model.parameters():
        p.grad = None
    return model.eval()


@pytest.fixture(scope="session")
def tiny_model(fmnist: Callable[..., ImageDataset]) -> Classifier:
    """The session's clean-trained tiny model, in eval mode."""
    with one_thread():
        return train_tiny(fmnist("train", n=TRAIN_N, seed=0))


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    with one_thread():
        yield


@pytest.fixture(scope="session")
def test_set(fmnist: Callable[..., ImageDataset]) -> ImageDataset:
    """TEST_N stratified Fashion-MNIST test images."""
    return fmnist("test", n=TEST_N, seed=1)
