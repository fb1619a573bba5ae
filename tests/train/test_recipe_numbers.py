"""The numbers training recipes ship, checked against the papers' definitions: the step paper A's
mixed batch takes, the distribution of its per-example ε with the config's defaults and units,
and N-FGSM's noise range."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch.nn import functional as F

from advscale.train import Kurakin, RecipeConfig, TrainConfig, build_recipe
from advscale.train.distributed import DistInfo
from advscale.train.step import Optimization

EPS = 8 / 255


@pytest.fixture
def batch(fmnist):
    return fmnist("test", n=64).tensors()


def ks_distance(samples: torch.Tensor, cdf) -> float:
    s = samples.double().sort().values
    n, f = len(s), cdf(s)
    i = torch.arange(1, n + 1, dtype=torch.float64)
    return float(torch.maximum(i / n - f, f - (i - 1) / n).max())


def truncated_half_normal_cdf(sigma: float, top: float):
    """CDF of |N(0, σ)| conditioned on [0, top]."""
    return lambda e: (
        torch.special.erf(e / (sigma * math.sqrt(2))) / math.erf(top / (sigma * math.sqrt(2)))
    )


def test_kurakin_step_follows_the_papers_loss(tiny_cnn, batch):
    """One SGD step (lr 1) moves the weights by −∇ of [Σ_clean L + λ·Σ_adv L] / ((m−k) + λ·k)
    per group, the loss written out by hand on the same inputs."""
    x, y = batch
    torch.manual_seed(0)
    model = tiny_cnn()
    reference = copy.deepcopy(model)
    cfg = TrainConfig()
    k, m, lam = 4, 16, 0.3
    sgd = torch.optim.SGD(model.parameters(), lr=1.0)
    step = Optimization(
        cfg=cfg,
        dist=DistInfo(),
        recipe=Kurakin(EPS, k=k, m=m, lam=lam, seed=3),
        gen_model=model,
        train_model=model,
        optimizer=sgd,
        scheduler=torch.optim.lr_scheduler.LambdaLR(sgd, lambda _: 1.0),
        scaler=None,
    )
    before = [p.detach().clone() for p in model.parameters()]
    weighted, weight_sum, correct, n = step.step([(x, y)], 0)

    inputs = Kurakin(EPS, k=k, m=m, lam=lam, seed=3)(reference, x, y, 0).inputs
    reference.train()
    logits = reference(inputs)
    ce = F.cross_entropy(logits, y, reduction="none")
    adv = torch.arange(64) % m < k
    groups = 64 // m
    loss = (ce[~adv].sum() + lam * ce[adv].sum()) / (groups * ((m - k) + lam * k))
    loss.backward()
    assert n == 64 and weight_sum == pytest.approx(groups * ((m - k) + lam * k))
    assert correct == int((logits.argmax(1) == y).sum())  # the training accuracy's count
    assert weighted / weight_sum == pytest.approx(float(loss.detach()), rel=1e-5)
    for p0, p1, ref in zip(before, model.parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(p0 - p1.detach(), ref.grad, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize(
    ("settings", "sigma"),
    [({}, 8.0), ({"sigma": 4}, 4.0)],
    ids=["default_sigma_is_half_eps_max", "sigma_in_pixel_levels"],
)
def test_kurakin_eps_from_the_config_is_the_papers_distribution(settings, sigma):
    """ε ~ |N(0, σ)| truncated to [0, ε_max], σ = ε_max / 2 unless given, both in pixel levels."""
    recipe = build_recipe(RecipeConfig(name="kurakin", eps=16, **settings), seed=0)
    e = recipe.sample_eps(20000, torch.device("cpu")).double() * 255
    assert float(e.min()) >= 0 and float(e.max()) <= 16 + 1e-4
    # 20000 draws: a KS distance above 0.015 has p < 1e-4.
    assert ks_distance(e, truncated_half_normal_cdf(sigma, 16.0)) < 0.015


def test_n_fgsm_noise_is_uniform_in_twice_the_ball(tiny_cnn, batch):
    """δ = η + ε·sign(g), η ~ U(−2ε, 2ε): on pixels away from 0 and 1, |δ| > 2ε exactly when
    η reaches beyond ε in the step's direction (P = 1/4), and |δ| < ε when η points against
    it by less than 2ε (P = 1/2)."""
    x, y = batch
    torch.manual_seed(0)
    model = tiny_cnn().train()
    x = 0.25 + 0.5 * x  # every pixel at least 3ε from 0 and 1: no clipping
    inputs = build_recipe(RecipeConfig(name="n_fgsm", eps=8), seed=0)(model, x, y, 0).inputs
    d = ((inputs - x) / EPS).flatten().double()
    assert float(d.abs().max()) <= 3 + 1e-4
    assert float((d.abs() > 2).float().mean()) == pytest.approx(0.25, abs=0.01)
    assert float((d.abs() < 1).float().mean()) == pytest.approx(0.5, abs=0.01)


def test_kurakin_called_without_a_step_makes_adversarial_examples(tiny_cnn, batch):
    """The step defaults to 0: without warm-up, the first call already attacks."""
    x, y = batch
    torch.manual_seed(0)
    inputs, _, w = Kurakin(EPS, k=2, m=4)(tiny_cnn(), x, y)
    assert int(((inputs - x).flatten(1).abs().amax(1) > 0).sum()) == 32
    assert int((w < 1).sum()) == 32


def test_kurakin_describes_itself_in_pixel_levels():
    recipe = build_recipe(RecipeConfig(name="kurakin", eps=16, k=4, m=8))
    assert repr(recipe) == (
        "Kurakin(method=step_ll, eps_max=16/255, sigma=8/255, k=4, m=8, lam=0.3)"
    )
