"""A tiny small_cnn trained for a few seconds on real Fashion-MNIST, shared by the attack tests."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest
import torch
from torch import Tensor

from advscale.data import ImageDataset
from advscale.models import Classifier

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


@pytest.fixture(scope="session")
def trained(
    fmnist: Callable[..., ImageDataset], tiny_trainer: Callable[..., Classifier]
) -> Trained:
    """The session's tiny model (eval mode) and TEST_N stratified test images."""
    model = tiny_trainer(fmnist("train", n=TRAIN_N, seed=0))
    x, y = fmnist("test", n=TEST_N, seed=1).tensors()
    return Trained(model, x, y)
