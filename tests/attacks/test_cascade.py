"""The strong preset as one attack: APGD-CE → APGD-T → Square on the points still robust."""

from __future__ import annotations

import torch

from advscale.attacks import APGD, PassCounter, StrongCascade, build_attack

FAST = {"ce_steps": 10, "t_steps": 10, "n_targets": 2, "square_queries": 50}


def test_cascade_is_the_worst_case_of_its_stages(trained):
    x, y = trained.x[:64], trained.y[:64]
    counted = PassCounter(trained.model)
    attack = build_attack("strong", counted, 0.04, seed=0, **FAST)
    result = attack.run(x, y)
    with torch.no_grad():
        clean = trained.model(x).argmax(1) == y
        pred = trained.model(result.x_adv).argmax(1)
    assert torch.equal(result.fooled, pred != y)
    # Each stage attacks only what the stages before left robust, and the counts add up.
    names = [s["attack"] for s in attack.stages]
    assert names[:2] == ["apgd_ce", "apgd_t"]
    for before, after in zip(attack.stages, attack.stages[1:], strict=False):
        assert after["attacked"] == before["attacked"] - before["fooled"]
    assert result.forward == sum(s["forward"] for s in attack.stages)
    assert counted.forward_count == result.forward + 1  # + the one-image class probe
    assert counted.backward_count == result.backward
    # At least as strong as its first stage alone with the same seed.
    ce = APGD(trained.model, 0.04, steps=10, seed=0).run(x, y)
    assert int((clean & ~result.fooled).sum()) <= int((clean & ~ce.fooled).sum())
    assert int((clean & ~result.fooled).sum()) > 0  # ε small enough to leave robust points


def test_l2_cascade_stays_in_the_l2_ball(trained):
    x, y = trained.x[:32], trained.y[:32]
    result = StrongCascade(trained.model, 0.5, norm="L2", seed=0, **FAST).run(x, y)
    assert float((result.x_adv - x).flatten(1).norm(dim=1).max()) <= 0.5 + 1e-5
    assert bool(result.fooled.any())
