"""A tiny small_cnn trained for a few seconds on real Fashion-MNIST, shared by the evaluation tests."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from advscale.data import ImageDataset
from advscale.models import Classifier

TRAIN_N, TEST_N = 2000, 150


@pytest.fixture(scope="session")
def tiny_model(
    fmnist: Callable[..., ImageDataset], tiny_trainer: Callable[..., Classifier]
) -> Classifier:
    """The session's clean-trained tiny model, in eval mode."""
    return tiny_trainer(fmnist("train", n=TRAIN_N, seed=0))


@pytest.fixture(scope="session")
def test_set(fmnist: Callable[..., ImageDataset]) -> ImageDataset:
    """TEST_N stratified Fashion-MNIST test images."""
    return fmnist("test", n=TEST_N, seed=1)
