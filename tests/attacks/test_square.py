"""Square attack: the paper's schedule and sampling, and that it works from scores alone."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from advscale.attacks import Square, build_attack, margin_loss, square_fraction, square_side


class NoBackward(torch.autograd.Function):
    """Identity whose backward raises: any gradient taken through the model fails loudly."""

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        raise AssertionError("the square attack must not take gradients")


class ScoresOnly(nn.Module):
    """The model as a black box: logits only, checked to be computed without autograd."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x):
        assert not torch.is_grad_enabled(), "queried with autograd on"
        assert not x.requires_grad
        return self.model(NoBackward.apply(x))


def test_p_schedule_halves_at_the_papers_iterations():
    at = lambda i, n=10000: square_fraction(i, n, 0.8)  # noqa: E731
    assert at(0) == at(10) == 0.8
    assert at(11) == at(50) == 0.4
    assert at(51) == 0.2 and at(201) == 0.1 and at(501) == 0.05
    assert at(8000) == 0.8 / 256 and at(8001) == at(9999) == 0.8 / 512
    # Another budget stretches the schedule: 1000 queries halve after iteration 1, 5, 20, ...
    assert at(1, 1000) == 0.8 and at(2, 1000) == 0.4 and at(6, 1000) == 0.2
    # Without p_init: AutoAttack's 0.8, Square's own default.
    assert square_fraction(0, 1000) == 0.8 and square_fraction(2, 1000) == 0.4


def test_square_side():
    assert square_side(0.8, 28, 28) == 25  # round(sqrt(0.8 * 784))
    assert square_side(0.8 / 512, 28, 28) == 1
    assert square_side(1.0, 28, 28) == 27  # strictly smaller than the image
    assert square_side(0.5, 1, 1) == 1


def test_margin_loss_sign_is_misclassification():
    logits = torch.tensor([[3.0, 1.0, 0.0], [1.0, 2.0, 0.5]])
    assert margin_loss(logits, torch.tensor([0, 0])).tolist() == [2.0, -1.0]


def test_square_breaks_the_model_from_scores_alone(trained):
    x, y = trained.x[:100], trained.y[:100]
    model = ScoresOnly(trained.model)
    clean = trained.clean_correct[:100]
    attack = Square(model, 0.1, n_queries=150, seed=0)
    with torch.no_grad():  # usable inside no_grad too
        result = attack.run(x, y)
    robust = float((clean & ~result.fooled).float().mean())
    assert robust <= 0.5 * float(clean.float().mean()), f"robust accuracy {robust:.0%}"
    assert result.backward == 0
    # Only still-robust points are queried: far fewer than n_queries per example.
    assert len(x) < result.forward < 0.7 * 150 * len(x)
    assert (result.x_adv - x).abs().max() <= 0.1 + 1e-6


def test_without_early_stop_every_example_uses_every_query(trained):
    x, y = trained.x[:8], trained.y[:8]
    result = Square(trained.model, 8 / 255, n_queries=20, seed=0, early_stop=False).run(x, y)
    assert result.forward == 20 * len(x)


def test_every_pixel_sits_on_a_corner_of_the_box(trained):
    """Stripes of ±ε and squares of ±2ε projected back leave each pixel at x ± ε or at 0/1."""
    x, y = trained.x[:16], trained.y[:16]
    eps = 8 / 255
    for n_queries in (1, 60):
        x_adv = Square(trained.model, eps, n_queries=n_queries, seed=0).perturb(x, y)
        d = x_adv - x
        on_corner = ((d.abs() - eps).abs() < 1e-6) | (x_adv == 0) | (x_adv == 1)
        assert bool(on_corner.all())
    # With no iteration after the start, the perturbation is vertical stripes: one sign per column.
    x_adv = Square(trained.model, eps, n_queries=1, seed=0).perturb(x, y)
    free = (x > eps) & (x < 1 - eps)  # pixels the [0, 1] box does not clip
    sign = torch.where(free, (x_adv - x).sign(), torch.zeros_like(x))
    col_max, col_min = sign.amax(2), sign.amin(2)
    assert bool(((col_max <= 0) | (col_min >= 0)).all()), "a column mixes +ε and −ε"


def test_registered_and_seeded(trained):
    x, y = trained.x[:16], trained.y[:16]
    a = build_attack("square", trained.model, 8 / 255, n_queries=30, seed=3).run(x, y)
    b = build_attack("square", trained.model, 8 / 255, n_queries=30, seed=3).run(x, y)
    assert torch.equal(a.x_adv, b.x_adv) and torch.equal(a.fooled, b.fooled)
    with pytest.raises(ValueError, match="n_queries"):
        Square(trained.model, n_queries=0)


def test_progress_is_reported_per_block_of_queries(trained):
    x, y = trained.x[:4], trained.y[:4]
    calls: list[tuple[int, int, int]] = []
    attack = Square(
        trained.model,
        8 / 255,
        n_queries=350,
        seed=0,
        early_stop=False,
        progress=lambda done, total, left: calls.append((done, total, left)),
    )
    attack.run(x, y)
    assert [c[0] for c in calls] == [100, 200, 300, 350]
    assert all(c[1] == 350 and c[2] == len(x) for c in calls)


def test_l2_square_spends_the_whole_budget(trained):
    """Every L2 iterate has norm ε unless the [0, 1] box clips it (the original's invariant)."""
    x, y = trained.x[:16], trained.y[:16]
    x = x.clamp(0.2, 0.8)  # no clipping: the norm is exactly ε
    for n_queries in (1, 40):
        r = build_attack("square_l2", trained.model, 0.5, n_queries=n_queries, seed=0).run(x, y)
        norms = (r.x_adv - x).flatten(1).norm(dim=1)
        assert torch.allclose(norms, torch.full_like(norms, 0.5), atol=1e-4)
