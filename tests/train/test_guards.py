"""The catastrophic-overfitting guard's actions on a collapse: stop and reduce_step restore the
best weights, only reduce_step shrinks the recipe's step, continue changes nothing."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from advscale.train import CatastrophicOverfitGuard, GuardConfig
from advscale.train.recipes import Recipe

GOOD = {"clean_acc": 0.8, "fgsm_acc": 0.5, "pgd_acc": 0.45}
COLLAPSED = {"clean_acc": 0.9, "fgsm_acc": 0.9, "pgd_acc": 0.05}  # both rules fire


@pytest.mark.parametrize(
    ("action", "restored", "step_scale"),
    [("stop", True, 1.0), ("reduce_step", True, 0.5), ("continue", False, 1.0)],
)
def test_collapse_actions(action, restored, step_scale):
    torch.manual_seed(0)
    model = nn.Linear(4, 3)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    recipe = Recipe(8 / 255)
    x, y = torch.rand(8, 4), torch.randint(0, 3, (8,))
    guard = CatastrophicOverfitGuard(GuardConfig(action=action, reduce_factor=0.5), 8 / 255, x, y)
    common = {"epoch": 0, "action": action, "model": model, "optimizer": optimizer}

    first = guard.check(GOOD, step=10, recipe=recipe, **common)
    assert first.improved and first.event is None
    best = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        model.weight.add_(1.0)
    verdict = guard.check(COLLAPSED, step=20, recipe=recipe, **common)

    assert verdict.event["event"] == "catastrophic_overfit" and verdict.event["action"] == action
    assert verdict.event["best_step"] == 10 and verdict.event["best_pgd_acc"] == 0.45
    same = all(torch.equal(v, best[k]) for k, v in model.state_dict().items())
    assert same == restored
    assert ("restored_step" in verdict.event) == restored
    assert recipe.step_scale == step_scale
    assert [h["collapsed"] for h in guard.history] == [False, True]
