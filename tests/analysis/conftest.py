"""Tiny real models trained for a few seconds on a Fashion-MNIST subset, shared by the analysis tests."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from advscale.models import Classifier


@pytest.fixture(scope="session")
def tiny_models(fmnist, tiny_trainer) -> Callable[[int], Classifier]:
    """``tiny_models(seed)``: a trained tiny model, cached per seed for the session."""
    cache: dict[int, Classifier] = {}
    train = fmnist("train", n=2000, seed=1)

    def get(seed: int) -> Classifier:
        if seed not in cache:
            cache[seed] = tiny_trainer(train, width=0.25, epochs=2, seed=seed)
        return cache[seed]

    return get
