"""Early stopping and ``perturb()``: what evaluation and training rely on.

With early stopping an example counts as broken if any iterate fooled it, and the image
returned for it is one that fools the model; ``perturb()`` returns final iterates for every
example without spending passes on bookkeeping.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import torch
from torch import nn

from advscale.attacks import APGD, ATTACKS, FGSM, ONE_STEP, PGD, GradientAttack
from advscale.train.config import RecipeConfig
from advscale.train.recipes import build_recipe


@pytest.fixture
def fast_budget() -> dict[str, int]:
    """Budgets of ``make_attack`` (conftest.py) here: PGD-5, APGD-8, Square-40."""
    return {"pgd": 5, "apgd": 8, "square": 40}


def predictions(model, x):
    with torch.no_grad():
        return model(x).argmax(1)


@pytest.mark.parametrize("early_stop", [True, False])
# The reference AutoAttack has fixed budgets and its own tests (test_reference.py).
@pytest.mark.parametrize("name", sorted(set(ATTACKS) - {"autoattack"}))
def test_fooled_agrees_with_the_returned_images(name, early_stop, trained, make_attack):
    x, y = trained.x[:32], trained.y[:32]
    result = make_attack(name, trained.model, early_stop=early_stop).run(x, y)
    misclassified = predictions(trained.model, result.x_adv) != y
    assert torch.equal(result.fooled, misclassified)
    if name not in ONE_STEP:
        assert bool(result.fooled.any()), "the attack should break some examples at ε = 8"


@contextmanager
def counting(module: nn.Module) -> Iterator[list[int]]:
    """Count in ``seen[0]`` the images passed forward through ``module`` inside the block; the
    hook is removed on leaving it (the model is the session's, shared by other tests)."""
    seen = [0]
    handle = module.register_forward_pre_hook(
        lambda m, args: seen.__setitem__(0, seen[0] + len(args[0]))
    )
    try:
        yield seen
    finally:
        handle.remove()


def test_early_stop_counts_any_fooling_iterate(trained):
    x, y = trained.x[:100], trained.y[:100]
    early = PGD(trained.model, 6 / 255, steps=10, seed=0).run(x, y)
    final = PGD(trained.model, 6 / 255, steps=10, seed=0, early_stop=False).run(x, y)
    # Same random start and steps: whatever the final iterate fools, some iterate fooled.
    assert int((final.fooled & ~early.fooled).sum()) == 0
    assert int(early.fooled.sum()) >= int(final.fooled.sum())
    # Fooled examples stop being attacked: fewer gradient passes than steps × batch.
    assert early.backward < 10 * len(x) == final.backward
    assert early.forward == early.backward + int((~early.fooled).sum())


def test_restarts_only_add_broken_examples(trained):
    x, y = trained.x[:100], trained.y[:100]
    one = PGD(trained.model, 4 / 255, steps=5, seed=0).run(x, y)
    three = PGD(trained.model, 4 / 255, steps=5, seed=0, restarts=3).run(x, y)
    assert int((one.fooled & ~three.fooled).sum()) == 0
    assert torch.equal(three.fooled, predictions(trained.model, three.x_adv) != y)


def test_restarts_without_early_stop_keep_the_highest_loss(trained):
    x, y = trained.x[:64], trained.y[:64]
    losses = []
    for restarts in (1, 4):
        x_adv = PGD(trained.model, 4 / 255, steps=3, seed=0, restarts=restarts).perturb(x, y)
        with torch.no_grad():
            losses.append(
                torch.nn.functional.cross_entropy(trained.model(x_adv), y, reduction="none")
            )
    assert bool((losses[1] >= losses[0] - 1e-5).all())


def test_perturb_is_the_final_iterate_without_bookkeeping(trained):
    x, y = trained.x[:32], trained.y[:32]
    with counting(trained.model.net) as seen:
        x_adv = PGD(trained.model, 8 / 255, steps=3, seed=0).perturb(x, y)
    assert seen[0] == 3 * len(x), "perturb() spends exactly one forward per step"
    full = PGD(trained.model, 8 / 255, steps=3, seed=0, early_stop=False).run(x, y)
    assert torch.equal(x_adv, full.x_adv)


def test_perturb_attacks_every_example(trained):
    """FGSM's perturb() moves every example by ±ε, the misclassified ones too."""
    x, y = trained.x[:32], trained.y[:32]
    x_adv = FGSM(trained.model, 8 / 255).perturb(x, y)
    x_ref = x.clone().requires_grad_(True)
    loss = torch.nn.functional.cross_entropy(trained.model(x_ref), y, reduction="sum")
    (grad,) = torch.autograd.grad(loss, x_ref)
    assert (x_adv - (x + 8 / 255 * grad.sign()).clamp(0, 1)).abs().max() <= 1e-6


def test_apgd_perturb_and_early_stop(trained):
    x, y = trained.x[:32], trained.y[:32]
    x_adv = APGD(trained.model, 8 / 255, steps=5, seed=0).perturb(x, y)
    assert (x_adv - x).abs().max() <= 8 / 255 + 1e-6
    # perturb() is run() without early stopping (Attack.perturb: early_stop=False; APGD has
    # no final check to skip), so the same seed gives the same images.
    full = APGD(trained.model, 8 / 255, steps=5, seed=0, early_stop=False).run(x, y)
    assert torch.equal(x_adv, full.x_adv)
    # Without early stopping every example takes the start gradient and one per step.
    assert full.backward == full.forward == 6 * len(x)
    early = APGD(trained.model, 8 / 255, steps=5, seed=0).run(x, y)
    assert early.backward < full.backward


def test_training_generates_with_perturb(trained, monkeypatch):
    calls = []
    original = GradientAttack.perturb

    def spy(self, *args, **kwargs):
        calls.append(type(self).__name__)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(GradientAttack, "perturb", spy)
    x, y = trained.x[:16], trained.y[:16]
    for name in ("pgd", "fgsm", "kurakin"):
        recipe = build_recipe(RecipeConfig(name=name, eps=8))
        batch = recipe.make(trained.model, x, y, 10**6)
        assert not torch.equal(batch.inputs, x)
    assert calls == ["PGD", "FGSM", "StepLL"]
