"""Recipes produce what they promise: which examples are adversarial, their ε, their weights."""

from __future__ import annotations

import math

import pytest
import torch

from advscale.errors import UserError
from advscale.train import Kurakin, RecipeConfig, build_recipe

EPS = 8 / 255


@pytest.fixture
def batch(fmnist):
    x, y = fmnist("test", n=64).tensors()
    return x, y


@pytest.fixture
def model(tiny_cnn):
    torch.manual_seed(0)
    return tiny_cnn().train()


def test_kurakin_replaces_exactly_k_of_every_m(model, batch):
    x, y = batch
    recipe = Kurakin(16 / 255, k=3, m=8, lam=0.3, seed=1)
    inputs, labels, weights = recipe(model, x, y, step=0)
    changed = (inputs - x).flatten(1).abs().amax(1) > 0
    expected = torch.arange(64) % 8 < 3
    assert torch.equal(changed, expected)
    assert torch.equal(labels, y)
    # Clean examples weigh 1, adversarial ones λ: Σw per group is (m − k) + λ·k.
    assert torch.allclose(weights[expected], torch.full((24,), 0.3))
    assert torch.allclose(weights[~expected], torch.ones(40))
    assert math.isclose(float(weights.sum()), 8 * ((8 - 3) + 0.3 * 3), rel_tol=1e-6)
    # Each adversarial example stays within its own ε and in [0, 1].
    eps = recipe.last_eps
    assert torch.all(eps[~expected] == 0) and torch.all(eps[expected] > 0)
    delta = (inputs - x).flatten(1).abs().amax(1)
    assert torch.all(delta <= eps + 1e-6)
    assert inputs.min() >= 0 and inputs.max() <= 1


def test_kurakin_loss_is_the_papers_normalisation(model, batch):
    x, y = batch
    recipe = Kurakin(8 / 255, k=4, m=16, lam=0.3, seed=0)
    inputs, labels, w = recipe(model, x, y, 0)
    ce = torch.nn.functional.cross_entropy(model(inputs), labels, reduction="none").detach()
    loop_loss = float((w * ce).sum() / w.sum())
    adv = torch.arange(64) % 16 < 4
    paper = float((ce[~adv].sum() + 0.3 * ce[adv].sum()) / ((64 - 16) + 0.3 * 16))
    assert math.isclose(loop_loss, paper, rel_tol=1e-5)


def test_kurakin_eps_is_truncated_half_normal():
    recipe = Kurakin(16 / 255, sigma=8 / 255, seed=0)
    e = recipe.sample_eps(20000, torch.device("cpu")) * 255
    assert float(e.min()) >= 0 and float(e.max()) <= 16
    # |N(0, 8)| truncated at 16 (a = 2σ): P(e < σ) = erf(1/√2)/erf(√2), mean σ√(2/π)(1 − e^{−2})/erf(√2).
    below = float((e < 8).float().mean())
    assert abs(below - math.erf(1 / math.sqrt(2)) / math.erf(math.sqrt(2))) < 0.015
    mean = 8 * math.sqrt(2 / math.pi) * (1 - math.exp(-2)) / math.erf(math.sqrt(2))
    assert abs(float(e.mean()) - mean) < 0.1


def test_kurakin_warmup_steps_are_clean(model, batch):
    x, y = batch
    recipe = Kurakin(8 / 255, warmup_steps=5)
    inputs, _, w = recipe(model, x, y, step=4)
    assert torch.equal(inputs, x) and torch.all(w == 1)
    inputs, _, _ = recipe(model, x, y, step=5)
    assert not torch.equal(inputs, x)


def test_kurakin_default_is_half_the_batch(model, batch):
    x, y = batch
    inputs, _, _ = Kurakin(8 / 255)(model, x, y, 0)
    assert int(((inputs - x).flatten(1).abs().amax(1) > 0).sum()) == 32


@pytest.mark.parametrize("name", ["fgsm", "rs_fgsm", "pgd"])
def test_projected_recipes_stay_in_the_eps_ball(name, model, batch):
    x, y = batch
    recipe = build_recipe(RecipeConfig(name=name, eps=8, steps=3))
    inputs, labels, w = recipe(model, x, y, 0)
    delta = (inputs - x).abs()
    assert float(delta.max()) <= EPS + 1e-6
    assert float(delta.max()) > EPS / 2
    assert inputs.min() >= 0 and inputs.max() <= 1
    assert torch.all(w == 1) and torch.equal(labels, y)


def test_n_fgsm_leaves_the_ball_but_stays_in_the_image_range(model, batch):
    x, y = batch
    inputs, _, _ = build_recipe(RecipeConfig(name="n_fgsm", eps=8))(model, x, y, 0)
    delta = (inputs - x).abs()
    assert float(delta.max()) > EPS * 1.5  # noise up to 2ε plus a step of ε: no projection to ε
    assert float(delta.max()) <= 3 * EPS + 1e-6
    assert inputs.min() >= 0 and inputs.max() <= 1


def test_rs_fgsm_steps_1_25_eps_from_a_random_start(model, batch):
    x, y = batch
    a = build_recipe(RecipeConfig(name="rs_fgsm", eps=8), seed=0)(model, x, y, 0).inputs
    b = build_recipe(RecipeConfig(name="fgsm", eps=8))(model, x, y, 0).inputs
    c = build_recipe(RecipeConfig(name="rs_fgsm", eps=8), seed=1)(model, x, y, 0).inputs
    assert not torch.equal(a, b) and not torch.equal(a, c)
    # Interior pixels end at a corner of the ball more often than not (step 1.25ε > ε).
    inside = (x > EPS) & (x < 1 - EPS)
    at_bound = ((a - x).abs() > EPS - 1e-6) & inside
    assert float(at_bound.sum()) / float(inside.sum()) > 0.5


def test_recipes_leave_gradients_and_mode_alone(model, batch):
    x, y = batch
    for name in ("kurakin", "fgsm", "rs_fgsm", "n_fgsm", "pgd"):
        build_recipe(RecipeConfig(name=name, eps=8, steps=2))(model, x, y, 0)
        assert all(p.grad is None for p in model.parameters()), name
        assert model.training, name


def test_recipe_random_state_round_trips(model, batch):
    x, y = batch
    cfg = RecipeConfig(name="rs_fgsm", eps=8)
    r1 = build_recipe(cfg, seed=5)
    r1(model, x, y, 0)
    saved = r1.state_dict()
    nxt = r1(model, x, y, 1).inputs
    r2 = build_recipe(cfg, seed=5)
    r2.load_state_dict(saved)
    assert torch.equal(r2(model, x, y, 1).inputs, nxt)


def test_bad_kurakin_settings_are_refused(model, batch):
    x, y = batch
    with pytest.raises(UserError, match="recipe.k=5"):
        Kurakin(8 / 255, k=5, m=4)
    with pytest.raises(UserError, match="recipe.lam"):
        Kurakin(8 / 255, lam=-0.1)
    with pytest.raises(UserError, match="recipe.m=48 does not divide"):
        Kurakin(8 / 255, m=48)(model, x, y, 0)
    with pytest.raises(UserError, match="recipe.eps"):
        Kurakin(300 / 255)
