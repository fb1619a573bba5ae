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
