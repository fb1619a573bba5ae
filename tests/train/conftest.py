"""Fixtures for the training tests: a tiny real model and a few real Fashion-MNIST batches."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from advscale.models import Classifier, build_classifier


def _tiny_cnn(num_classes: int = 10, width: float = 0.25) -> Classifier:
    return build_classifier(
        "small_cnn",
        {"num_classes": num_classes, "in_channels": 1, "width": width},
        (0.286,),
        (0.353,),
    )


@pytest.fixture
def tiny_cnn() -> Callable[..., Classifier]:
    """``tiny_cnn(num_classes=10, width=0.25)``: a small_cnn that trains in seconds on a CPU."""
    return _tiny_cnn


def _tiny_settings(**extra: object) -> list[str]:
    base = {
        "data.n_train": 512,
        "data.n_val": 200,
        "epochs": 1,
        "batch_size": 32,
        "progress": "false",
        "tensorboard": "false",
        "model.kwargs": "{width: 0.25}",
        "optimizer.name": "adamw",
        "optimizer.lr": 0.005,
        "optimizer.weight_decay": 0,
        "schedule.name": "constant",
        "eval.n": 200,
        "eval.attack_kwargs": "{pgd: {steps: 5}}",
        "eval.label_leak": "false",
        "guard.enabled": "false",
    }
    base.update(extra)
    return [f"{k}={v}" for k, v in base.items()]


@pytest.fixture
def tiny_settings() -> Callable[..., list[str]]:
    """``tiny_settings(**{"recipe.name": "pgd"})``: ``--set`` overrides for a run of a few seconds
    on a Fashion-MNIST subset (the keys given replace the defaults)."""
    return _tiny_settings
