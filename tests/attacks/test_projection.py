"""Property tests of the one projection every attack relies on: ε-ball ∩ [0, 1]."""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from advscale.attacks import as_eps, lp_norm, project, random_start

TOL = 1e-6


@st.composite
def cases(draw):
    """(x, delta, eps as given, eps as (N,1,1,1), norm) over random shapes, budgets and norms."""
    n = draw(st.integers(1, 4))
    shape = (n, draw(st.integers(1, 3)), draw(st.integers(1, 6)), draw(st.integers(1, 6)))
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    x = torch.rand(shape, generator=g)
    # Images have saturated pixels: put exact 0s and 1s in, where the box binds.
    x[torch.rand(shape, generator=g) < 0.2] = 0.0
    x[torch.rand(shape, generator=g) < 0.1] = 1.0
    norm = draw(st.sampled_from(["linf", "l2"]))
    budget = st.floats(0.0, 1.0) if norm == "linf" else st.floats(0.0, 4.0)
    eps = draw(st.one_of(budget, st.lists(budget, min_size=n, max_size=n).map(torch.tensor)))
    delta = torch.randn(shape, generator=g) * draw(st.floats(0.0, 3.0))
    return x, delta, eps, as_eps(eps, n, x), norm


def in_ball(delta, eps, norm) -> bool:
    return bool((lp_norm(delta, norm) <= eps * (1 + TOL) + TOL).all())


@settings(max_examples=150, deadline=None)
@given(cases())
def test_projection_lands_in_ball_and_box(case):
    x, delta, _, eps, norm = case
    out = project(delta, x, eps, norm)
    assert out.shape == x.shape and out.dtype == x.dtype
    assert in_ball(out, eps, norm)
    # x + delta is what attacks return: it must be a valid image exactly, not approximately.
    assert bool(((x + out) >= 0).all()) and bool(((x + out) <= 1).all())


@settings(max_examples=150, deadline=None)
@given(cases())
def test_projection_is_idempotent(case):
    x, delta, _, eps, norm = case
    once = project(delta, x, eps, norm)
    twice = project(once, x, eps, norm)
    if norm == "linf":
        assert torch.equal(once, twice)
    else:  # rescaling to the sphere is exact up to one rounding of eps / norm
        assert (once - twice).abs().max() <= TOL * max(1.0, float(eps.max()))


@settings(max_examples=150, deadline=None)
@given(cases())
def test_perturbation_inside_is_unchanged(case):
    x, delta, _, eps, norm = case
    inside = 0.5 * project(delta, x, eps, norm)  # strictly inside the ball, still in the box
    assert torch.equal(project(inside, x, eps, norm), inside)


@settings(max_examples=100, deadline=None)
@given(cases())
def test_float_and_per_example_eps_agree(case):
    x, delta, eps_given, eps, norm = case
    assert torch.equal(
        project(delta, x, eps_given if isinstance(eps_given, float) else eps, norm),
        project(delta, x, eps, norm),
    )


@settings(max_examples=100, deadline=None)
@given(cases())
def test_random_start_is_feasible(case):
    x, _, _, eps, norm = case
    d = random_start(x, eps, norm, torch.Generator().manual_seed(0))
    assert in_ball(d, eps, norm)
    assert bool(((x + d) >= 0).all()) and bool(((x + d) <= 1).all())
    assert bool((d[eps.flatten() == 0] == 0).all())


def test_zero_budget_gives_zero_perturbation():
    x = torch.rand(3, 1, 4, 4)
    for norm in ("linf", "l2"):
        assert torch.equal(project(torch.randn_like(x), x, 0.0, norm), torch.zeros_like(x))
