"""Early stopping and ``perturb()``: what evaluation and training rely on.

With early stopping an example counts as broken if any iterate fooled it, and the image
returned for it is one that fools the model; ``perturb()`` returns final iterates for every
example without spending passes on bookkeeping.
"""

from __future__ import annotations

import pytest
import torch

from advscale.attacks import APGD, ATTACKS, FGSM, PGD, Attack, GradientAttack, build_attack

FAST = {
    "pgd": {"steps": 5},
    "pgd_l2": {"steps": 5},
    "apgd": {"steps": 8},
    "apgd_ce": {"steps": 8},
    "apgd_dlr": {"steps": 8},
    "apgd_t": {"steps": 4, "n_targets": 2},
    "square": {"n_queries": 40},
}


def make(name, model, **kwargs) -> Attack:
    eps = 8 / 255 if ATTACKS[name].norm == "linf" else 1.0
    return build_attack(name, model, eps, **{**FAST.get(name, {}), "seed": 0, **kwargs})


def predictions(model, x):
    with torch.no_grad():
        return model(x).argmax(1)


@pytest.mark.parametrize("early_stop", [True, False])
@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_fooled_agrees_with_the_returned_images(name, early_stop, trained):
    x, y = trained.x[:32], trained.y[:32]
    result = make(name, trained.model, early_stop=early_stop).run(x, y)
    misclassified = predictions(trained.model, result.x_adv) != y
    assert torch.equal(result.fooled, misclassified)
    if name not in ("random_sign", "fgsm", "fgsm_pred", "step_ll", "step_rnd", "fgm_l2"):
        assert bool(result.fooled.any()), "the attack should break some examples at ε = 8"


def counting(model):
    """Wrap ``model`` so that ``seen[0]`` counts the images passed forward."""
    seen = [0]
    model.register_forward_pre_hook(lambda m, args: seen.__setitem__(0, seen[0] + len(args[0])))
    return seen


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
    seen = counting(trained.model.net)
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
    early = APGD(trained.model, 8 / 255, steps=5, seed=0).run(x, y)
    assert early.backward < 6 * len(x)


def test_training_generates_with_perturb(trained, monkeypatch):
    recipes = pytest.importorskip("advscale.train.recipes")
    config = pytest.importorskip("advscale.train.config")
    calls = []
    original = GradientAttack.perturb

    def spy(self, *args, **kwargs):
        calls.append(type(self).__name__)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(GradientAttack, "perturb", spy)
    x, y = trained.x[:16], trained.y[:16]
    for name in ("pgd", "fgsm", "kurakin"):
        recipe = recipes.build_recipe(config.RecipeConfig(name=name, eps=8))
        batch = recipe.make(trained.model, x, y, 10**6)
        assert not torch.equal(batch.inputs, x)
    assert calls == ["PGD", "FGSM", "StepLL"]
