"""A tiny small_cnn trained for a few seconds on real Fashion-MNIST, shared by the attack tests,
and ``make_attack``: any registered attack with small budgets, seeded."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest
import torch
from torch import Tensor

from advscale.attacks import ATTACKS, Attack, build_attack
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


@pytest.fixture
def fast_budget() -> dict[str, int]:
    """PGD steps, APGD steps and Square queries that ``make_attack`` uses.

    Small budgets keep each attack to a fraction of a second; the defaults are tested elsewhere.
    A test module overrides this fixture to use other counts.
    """
    return {"pgd": 4, "apgd": 6, "square": 30}


@pytest.fixture
def make_attack(fast_budget: dict[str, int]) -> Callable[..., Attack]:
    """``make_attack(name, model, eps=None, **kwargs)``: the registered attack ``name`` with the
    small budgets of ``fast_budget``, seed 0 and ε = 8/255 (L∞) or 1.0 (L2) unless given."""
    fast = {
        "pgd": {"steps": fast_budget["pgd"]},
        "pgd_l2": {"steps": fast_budget["pgd"]},
        "apgd": {"steps": fast_budget["apgd"]},
        "apgd_ce": {"steps": fast_budget["apgd"]},
        "apgd_dlr": {"steps": fast_budget["apgd"]},
        "apgd_l2": {"steps": fast_budget["apgd"]},
        "apgd_dlr_l2": {"steps": fast_budget["apgd"]},
        "apgd_t": {"steps": 4, "n_targets": 2},
        "apgd_t_l2": {"steps": 4, "n_targets": 2},
        "fab_t": {"steps": 6, "n_targets": 2},
        "fab_t_l2": {"steps": 6, "n_targets": 2},
        "square": {"n_queries": fast_budget["square"]},
        "square_l2": {"n_queries": fast_budget["square"]},
        "strong": {
            "ce_steps": fast_budget["apgd"],
            "t_steps": 4,
            "n_targets": 2,
            "fab_steps": 6,
            "square_queries": fast_budget["square"],
        },
    }

    def make(name: str, model: torch.nn.Module, eps: float | None = None, **kwargs) -> Attack:
        default = 8 / 255 if ATTACKS[name].norm == "linf" else 1.0
        kw = {**fast.get(name, {}), "seed": 0, **kwargs}
        return build_attack(name, model, default if eps is None else eps, **kw)

    return make
