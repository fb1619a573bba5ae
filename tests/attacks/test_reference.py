"""The reference AutoAttack through advscale: same result type and pass counts as every attack,
registered by name, and a clear message when pyautoattack is not installed."""

from __future__ import annotations

import sys

import pytest
import torch

from advscale.attacks import PassCounter, build_attack
from advscale.attacks.reference import AutoAttack
from advscale.errors import UserError


def test_autoattack_runs_the_reference_and_counts_its_passes(trained):
    pytest.importorskip("pyautoattack")
    x, y = trained.x[:24], trained.y[:24]
    counted = PassCounter(trained.model)
    attack = build_attack("AutoAttack", counted, 0.15, seed=0)  # an alias spelling
    assert isinstance(attack, AutoAttack)
    result = attack.run(x, y)
    assert result.x_adv.shape == x.shape and result.fooled.shape == y.shape
    assert float((result.x_adv - x).abs().max()) <= 0.15 + 1e-6
    with torch.no_grad():
        pred = trained.model(result.x_adv).argmax(1)
    # Fooled exactly where the returned image is misclassified (clean mistakes included).
    assert torch.equal(result.fooled, pred != y)
    assert result.fooled.float().mean() > 0.5  # ε = 0.15 breaks an undefended model
    # The result's counts are those a counting wrapper around the model sees (the probe of
    # the number of classes is one image), and APGD-CE alone takes 100 steps per image the
    # model classifies correctly (the others are not attacked).
    with torch.no_grad():
        correct = int((trained.model(x).argmax(1) == y).sum())
    assert result.backward >= 100 * correct and result.forward > result.backward
    assert counted.forward_count == result.forward + 1
    assert counted.backward_count == result.backward


def test_autoattack_refuses_what_the_reference_cannot_do(trained):
    pytest.importorskip("pyautoattack")
    x, y = trained.x[:4], trained.y[:4]
    attack = AutoAttack(trained.model, 8 / 255)
    with pytest.raises(UserError, match="one eps for the batch"):
        attack.run(x, y, eps=torch.tensor([0.01, 0.02, 0.03, 0.04]))
    with pytest.raises(UserError, match="untargeted"):
        attack.run(x, y, target=torch.zeros_like(y))


def test_missing_package_names_the_install_line(trained, monkeypatch):
    monkeypatch.setitem(sys.modules, "pyautoattack", None)  # what an absent package looks like
    with pytest.raises(UserError, match=r"pip install advscale\[autoattack\]"):
        build_attack("autoattack", trained.model, 8 / 255)


def _with_grads(model):
    """Every other parameter holds a gradient from the user's own step; the rest none."""
    params = list(model.parameters())
    for i, p in enumerate(params):
        p.grad = torch.full_like(p, float(i)) if i % 2 else None
    return (
        params,
        [p.requires_grad for p in params],
        [None if p.grad is None else p.grad.clone() for p in params],
    )


def _unchanged(params, flags, grads) -> bool:
    return all(
        p.requires_grad == f and ((p.grad is None) if g is None else torch.equal(p.grad, g))
        for p, f, g in zip(params, flags, grads, strict=True)
    )


def test_backward_inside_parameters_untouched_leaves_grads_as_they_were(trained):
    from advscale.attacks.reference import parameters_untouched

    params, flags, grads = _with_grads(trained.model)
    x = trained.x[:4].clone().requires_grad_(True)
    try:
        with parameters_untouched(trained.model):
            trained.model(x).sum().backward()  # what the reference's FAB does
        assert x.grad is not None and _unchanged(params, flags, grads)
        with pytest.raises(RuntimeError), parameters_untouched(trained.model):
            raise RuntimeError("the attack failed half-way")
        assert _unchanged(params, flags, grads)
    finally:
        for p in params:
            p.grad = None


def test_autoattack_leaves_every_parameter_and_its_grad_as_it_was(trained):
    pytest.importorskip("pyautoattack")
    params, flags, grads = _with_grads(trained.model)
    weights = [p.detach().clone() for p in params]
    try:
        AutoAttack(trained.model, 0.15, seed=0).run(trained.x[:6], trained.y[:6])
        assert _unchanged(params, flags, grads)
        assert all(torch.equal(p.detach(), w) for p, w in zip(params, weights, strict=True))
    finally:
        for p in params:
            p.grad = None
