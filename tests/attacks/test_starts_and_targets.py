"""Where attacks start and what they aim at: the random starts' distributions (checked against
their definitions with fixed seeds), the least-likely class, and the check of the start itself."""

from __future__ import annotations

import math

import pytest
import torch
from torch.nn import functional as F

from advscale.attacks import PGD, PGDL2, IterLL, StepLL, lp_norm, random_start

D = 784  # pixels of a Fashion-MNIST image


def ks_distance(samples: torch.Tensor, cdf) -> float:
    """Kolmogorov-Smirnov distance between the samples and a CDF."""
    s = samples.double().sort().values
    n = len(s)
    f = cdf(s)
    i = torch.arange(1, n + 1, dtype=torch.float64)
    return float(torch.maximum(i / n - f, f - (i - 1) / n).max())


def mid_gray(n: int) -> torch.Tensor:
    """Images far from 0 and 1, so that no start is clipped to the image range."""
    return torch.full((n, 1, 28, 28), 0.5)


def test_linf_start_is_uniform_in_the_box_per_pixel():
    eps = torch.full((64, 1, 1, 1), 8 / 255)
    delta = random_start(mid_gray(64), eps, "linf", torch.Generator().manual_seed(0))
    u = (delta / eps).flatten()
    # 50k pixels: a KS distance above 0.01 has p < 1e-4 for a uniform sample.
    assert ks_distance(u, lambda t: ((t + 1) / 2).clamp(0, 1)) < 0.01


def test_l2_start_is_uniform_in_the_ball():
    """Uniform in the d-ball: direction uniform on the sphere, P(r ≤ ε·s) = s^d."""
    n, eps = 4000, 0.5
    e = torch.full((n, 1, 1, 1), eps)
    delta = random_start(mid_gray(n), e, "l2", torch.Generator().manual_seed(0))
    r = lp_norm(delta, "l2").flatten().double() / eps
    assert float(r.max()) <= 1 + 1e-6
    # (r/ε)^d is uniform on [0, 1]; 4000 radii: KS above 0.035 has p < 1e-4.
    assert ks_distance(r.pow(D), lambda t: t.clamp(0, 1)) < 0.035
    direction = delta.flatten(1) / lp_norm(delta, "l2").flatten(1)
    # The mean of n uniform unit vectors has squared length ≈ 1/n.
    assert float(direction.mean(0).norm()) ** 2 < 3 / n
    # APGD's start: a random direction of length exactly ε.
    sphere = random_start(mid_gray(n), e, "l2", torch.Generator().manual_seed(1), sphere=True)
    assert torch.allclose(lp_norm(sphere, "l2").flatten(), torch.full((n,), eps), rtol=1e-5)


@pytest.mark.parametrize(
    "make",
    [
        lambda m: IterLL(m, 4 / 255),
        lambda m: StepLL(m, 4 / 255),
        lambda m: PGD(m, 4 / 255, steps=5, target="ll", seed=0),
    ],
    ids=["iter_ll", "step_ll", "pgd_target_ll"],
)
def test_least_likely_attacks_raise_the_least_likely_class(trained, make):
    model = trained.model
    x, y = trained.x[:200], trained.y[:200]
    with torch.no_grad():
        clean = F.log_softmax(model(x), 1)
    ll = clean.argmin(1)
    x_adv = make(model)(x, y)
    with torch.no_grad():
        adv = F.log_softmax(model(x_adv), 1)
    rows = torch.arange(len(x))
    raised = adv[rows, ll] > clean[rows, ll]
    assert float(raised.float().mean()) > 0.95
    # ...and by more than any other wrong class on average: it is the class aimed at.
    gain = (adv - clean).scatter(1, y[:, None], -math.inf)
    assert float((gain.argmax(1) == ll).float().mean()) > 0.5


@pytest.mark.parametrize(("cls", "norm", "eps"), [(PGD, "linf", 0.1), (PGDL2, "l2", 3.0)])
def test_an_example_the_random_start_fools_is_returned_at_the_start(trained, cls, norm, eps):
    """The start is an iterate: when it fools the model, the attack stops there."""
    model = trained.model
    x, y = trained.x[:200], trained.y[:200]
    e = torch.full((len(x), 1, 1, 1), eps)
    start = x + random_start(x, e, norm, torch.Generator().manual_seed(7))
    with torch.no_grad():
        fooled_at_start = model(start).argmax(1) != y
    assert 5 < int(fooled_at_start.sum()) < len(x)
    result = cls(model, eps, steps=3, seed=7).run(x, y)
    assert bool(result.fooled[fooled_at_start].all())
    assert torch.equal(result.x_adv[fooled_at_start], start[fooled_at_start])
