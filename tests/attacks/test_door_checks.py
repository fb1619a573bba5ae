"""Door checks: every attack refuses what it cannot mean (pixel-level ε, NaN pixels, labels
outside the model's classes, non-positive budgets) with a message naming the argument, and for
any valid input returns images in the ε-ball and [0, 1]."""

from __future__ import annotations

import inspect

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from advscale.attacks import (
    APGD,
    APGDT,
    ATTACKS,
    PGD,
    IterLL,
    Square,
    StepLL,
    build_attack,
    lp_norm,
)
from advscale.errors import UserError

BUILDABLE = sorted(n for n in ATTACKS if n != "autoattack")
FAST = {"steps": 2, "n_queries": 5, "ce_steps": 2, "t_steps": 2, "n_targets": 2}


def fast(name: str, model, eps, **kw):
    cls = ATTACKS[name]
    params = set()
    for klass in cls.__mro__:
        if "__init__" in vars(klass):
            params |= set(inspect.signature(klass.__init__).parameters)
    budget = {k: v for k, v in FAST.items() if k in params}
    return build_attack(name, model, eps, seed=0, **budget, **kw)


@pytest.fixture(scope="module")
def model(trained):
    return trained.model


@pytest.mark.parametrize("name", BUILDABLE)
def test_pixel_level_eps_is_refused_with_the_fix(name, model):
    if ATTACKS[name].norm == "l2":
        # An L2 radius above 1 is legitimate; above √(pixels) the ball holds the whole box.
        attack = fast(name, model, 0.5)
        x = torch.rand(2, 1, 28, 28)
        with pytest.raises(UserError, match=r"eps=29.*√784"):
            attack.run(x, torch.tensor([0, 1]), eps=29.0)
        return
    with pytest.raises(UserError, match=r"eps=8\b.*pass 8/255"):
        fast(name, model, 8)
    with pytest.raises(UserError, match="eps"):
        fast(name, model, torch.tensor([0.01, 4.0]))  # per-example ε too


@pytest.mark.parametrize("eps", [-0.01, float("nan"), float("inf")])
def test_negative_or_non_finite_eps_is_refused(eps, model, trained):
    with pytest.raises(UserError, match="eps"):
        PGD(model, eps)
    attack = PGD(model, 8 / 255, steps=1)
    x, y = trained.x[:3], trained.y[:3]
    with pytest.raises(UserError, match="eps"):
        attack.run(x, y, eps=torch.tensor([0.01, eps, 0.02]))


@pytest.mark.parametrize("name", BUILDABLE)
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -0.5, 1.5])
def test_non_finite_or_out_of_range_pixels_are_refused(name, bad, model, trained):
    x, y = trained.x[:4].clone(), trained.y[:4]
    x[1, 0, 3, 3] = bad
    eps = 8 / 255 if ATTACKS[name].norm == "linf" else 0.5
    with pytest.raises(UserError, match=r"inputs x must be finite and in \[0, 1\]"):
        fast(name, model, eps).run(x, y)


@pytest.mark.parametrize("name", BUILDABLE)
@pytest.mark.parametrize("label", [10, -1, 255])
def test_labels_outside_the_logits_are_refused(name, label, model, trained):
    """Today's alternative was worse: most attacks reported every such point fooled."""
    x, y = trained.x[:4], trained.y[:4].clone()
    y[2] = label
    eps = 8 / 255 if ATTACKS[name].norm == "linf" else 0.5
    with pytest.raises(UserError, match=r"labels y must be class indices in \[0, "):
        fast(name, model, eps).run(x, y)


def test_targets_outside_the_logits_are_refused(model, trained):
    x, y = trained.x[:4], trained.y[:4]
    with pytest.raises(UserError, match=r"labels y and target .*\[0, 10\)"):
        APGD(model, steps=2).run(x, y, target=torch.tensor([1, 2, 3, 10]))
    with pytest.raises(UserError, match="target must be"):
        PGD(model, target="most_likely")
    with pytest.raises(UserError, match=r"\[0, 10\)"):
        PGD(model, steps=1, target=12).run(x, y)


@pytest.mark.parametrize(
    "make, arg",
    [
        (lambda m: PGD(m, steps=0), "steps"),
        (lambda m: PGD(m, restarts=0), "restarts"),
        (lambda m: PGD(m, n_restarts=0), "restarts"),
        (lambda m: PGD(m, alpha=0.0), "alpha"),
        (lambda m: PGD(m, alpha=-1 / 255), "alpha"),
        (lambda m: IterLL(m, steps=0), "steps"),
        (lambda m: StepLL(m, alpha_scale=-1.0), "alpha_scale"),
        (lambda m: APGD(m, steps=0), "steps"),
        (lambda m: APGD(m, restarts=0), "restarts"),
        (lambda m: APGD(m, rho=0.0), "rho"),
        (lambda m: APGDT(m, n_targets=0), "n_targets"),
        (lambda m: Square(m, n_queries=0), "n_queries"),
        (lambda m: Square(m, restarts=0), "restarts"),
        (lambda m: Square(m, p_init=0.0), "p_init"),
    ],
)
def test_bad_budgets_are_refused_at_construction(make, arg, model):
    with pytest.raises(UserError, match=rf"^{arg} must be"):
        make(model)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    name=st.sampled_from(BUILDABLE),
    n=st.integers(1, 5),
    eps_frac=st.floats(0.0, 1.0),
    per_example=st.booleans(),
    data_seed=st.integers(0, 2**16),
)
def test_valid_inputs_stay_in_the_ball_and_the_box(
    name, n, eps_frac, per_example, data_seed, model
):
    g = torch.Generator().manual_seed(data_seed)
    x = torch.rand(n, 1, 28, 28, generator=g)
    x[:, :, :4] = (x[:, :, :4] > 0.5).float()  # saturated pixels: the box clips
    y = torch.randint(0, 10, (n,), generator=g)
    top = 1.0 if ATTACKS[name].norm == "linf" else 28.0
    eps = eps_frac * top * (torch.rand(n, generator=g) if per_example else torch.ones(n))
    attack = fast(name, model, 8 / 255 if ATTACKS[name].norm == "linf" else 0.5)
    result = attack.run(x, y, eps=eps)
    x_adv = result.x_adv
    assert bool(torch.isfinite(x_adv).all())
    assert bool((x_adv >= 0).all() and (x_adv <= 1).all())
    dist = lp_norm(x_adv - x, attack.norm).flatten()
    assert bool((dist <= eps * (1 + 1e-5) + 1e-6).all()), f"max excess {(dist - eps).max():.3g}"
    assert result.fooled.shape == (n,)
