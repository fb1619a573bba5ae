"""Promises every registered attack keeps, checked on the tiny trained model.

The attack never changes what it was not asked to change (model mode, parameter gradients),
its output is a valid image within each example's own ε, and it keeps dtype and device.
"""

from __future__ import annotations

import copy

import pytest
import torch

from advscale.attacks import (
    ATTACKS,
    IterBasic,
    IterLL,
    build_attack,
    kurakin_steps,
    lp_norm,
)

# make_attack (conftest.py) builds each attack with fast_budget: PGD-4, APGD-6, Square-30.
# The reference AutoAttack has fixed budgets and its own tests (test_reference.py).
NAMES = sorted(set(ATTACKS) - {"autoattack"})
TARGETED = [n for n in NAMES if n != "random_sign"]


@pytest.fixture
def model(trained):
    """A private copy: tests change its mode and gradients."""
    return copy.deepcopy(trained.model)


@pytest.fixture
def batch(trained):
    return trained.x[:16], trained.y[:16]


def check_feasible(x, x_adv, eps, norm):
    assert x_adv.shape == x.shape and x_adv.dtype == x.dtype and x_adv.device == x.device
    assert bool((x_adv >= 0).all()) and bool((x_adv <= 1).all())
    eps = torch.as_tensor(eps, dtype=x.dtype).reshape(-1)
    dist = lp_norm(x_adv - x, norm).flatten()
    assert bool((dist <= eps * (1 + 1e-6) + 1e-6).all()), (
        f"max excess {float((dist - eps).max()):.3g}"
    )


@pytest.mark.parametrize("name", NAMES)
def test_output_is_a_valid_image_in_the_ball(name, model, batch, make_attack):
    x, y = batch
    attack = make_attack(name, model)
    result = attack.run(x, y)
    check_feasible(x, result.x_adv, attack.eps, attack.norm)
    assert result.fooled.dtype == torch.bool and result.fooled.shape == y.shape
    check_feasible(x, attack.perturb(x, y), attack.eps, attack.norm)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("training", [True, False])
def test_model_mode_is_restored(name, training, model, batch, make_attack):
    x, y = batch
    model.train(training)
    seen: list[bool] = []
    model.net.register_forward_pre_hook(lambda m, _: seen.append(m.training))
    make_attack(name, model).run(x, y)
    assert model.training is training
    assert all(m.training is training for m in model.modules())
    assert seen and not any(seen), "the attack must run the model in eval mode"


@pytest.mark.parametrize("name", ["fgsm", "pgd", "apgd", "square"])
def test_keep_mode_attacks_in_the_callers_mode(name, model, batch, make_attack):
    x, y = batch
    model.train()
    seen: list[bool] = []
    model.net.register_forward_pre_hook(lambda m, _: seen.append(m.training))
    make_attack(name, model, mode="keep").perturb(x, y)
    assert seen and all(seen) and model.training


@pytest.mark.parametrize("name", NAMES)
def test_parameter_grads_are_untouched(name, model, batch, make_attack):
    x, y = batch
    params = list(model.parameters())
    for i, p in enumerate(params):  # half with a gradient, half without
        p.grad = torch.randn_like(p) if i % 2 == 0 else None
    before = [None if p.grad is None else p.grad.clone() for p in params]
    attack = make_attack(name, model)
    attack.run(x, y)
    attack.perturb(x, y)
    for p, g in zip(params, before, strict=True):
        if g is None:
            assert p.grad is None
        else:
            assert torch.equal(p.grad, g)


@pytest.mark.parametrize("name", NAMES)
def test_per_example_eps_is_honoured(name, model, batch, make_attack):
    x, y = batch
    top = 8 / 255 if ATTACKS[name].norm == "linf" else 1.0
    eps = torch.linspace(0, top, len(x))
    eps[1::4] = 0.0
    attack = make_attack(name, model)
    for x_adv in (attack.run(x, y, eps).x_adv, attack.perturb(x, y, eps)):
        check_feasible(x, x_adv, eps, attack.norm)
        assert torch.equal(x_adv[eps == 0], x[eps == 0]), "ε_i = 0 must give the clean image"
        assert (x_adv[eps > 0] - x[eps > 0]).abs().amax() > 0, "a positive ε must be used"


@pytest.mark.parametrize("name", TARGETED)
def test_targeted_attacks_reach_the_target(name, trained, make_attack):
    x, y = trained.x[:64], trained.y[:64]
    target = (y + 1 + torch.randint(0, 9, y.shape)) % 10  # a random class other than the true one
    # Large budgets: one-step attacks reach a given class far less often than they misclassify.
    eps = 32 / 255 if ATTACKS[name].norm == "linf" else 4.0
    kwargs = {"n_queries": 100} if name.startswith("square") else {}
    result = make_attack(name, trained.model, eps, **kwargs).run(x, y, target=target)
    with torch.no_grad():
        clean_hits = float((trained.model(x).argmax(1) == target).float().mean())
        pred = trained.model(result.x_adv).argmax(1)
    hits = float((pred == target).float().mean())
    # Chance is 1/9 (an untargeted hit on a random wrong class); 0.19 is ~2 sd above it.
    assert hits > 1 / 9 + 0.08 and hits >= clean_hits + 0.15, f"target reached on {hits:.0%}"
    # A targeted attack succeeds by reaching the target, not by any misclassification.
    assert torch.equal(result.fooled, pred == target)


@pytest.mark.parametrize("name", NAMES)
def test_dtype_and_device_are_kept(name, trained, make_attack):
    model = copy.deepcopy(trained.model).double()
    x, y = trained.x[:6].double(), trained.y[:6]
    result = make_attack(name, model).run(x, y)
    assert result.x_adv.dtype == torch.float64 and result.x_adv.device == x.device
    assert result.fooled.device == x.device


def test_iterative_defaults_follow_paper_a(trained, batch):
    x, y = batch
    # min(ε + 4, 1.25·ε) iterations, ε in pixel levels, rounded up so the boundary is reached.
    for levels, steps in [(1, 2), (2, 3), (4, 5), (8, 10), (16, 20), (32, 36)]:
        assert kurakin_steps(torch.tensor([levels / 255])) == steps
    for cls in (IterBasic, IterLL):
        attack = cls(trained.model, 8 / 255, early_stop=False)
        assert attack.alpha == pytest.approx(1 / 255) and not attack.random_start
        result = attack.run(x, y)
        assert result.backward == 10 * len(x)
        # 10 steps of 1/255 from the clean image reach at most, and mostly exactly, 8/255.
        dist = lp_norm(result.x_adv - x, "linf").flatten()
        assert float(dist.max()) <= 8 / 255 + 1e-6 and float(dist.median()) == pytest.approx(
            8 / 255, abs=1e-6
        )


def test_bad_arguments_are_named(trained, batch, make_attack):
    x, y = batch
    with pytest.raises(ValueError, match="unknown attack 'pgdd'.*Did you mean pgd"):
        build_attack("pgdd", trained.model)
    with pytest.raises(ValueError, match=r"inputs x must be finite and in \[0, 1\]"):
        make_attack("fgsm", trained.model).run(x * 2 - 0.5, y)
    with pytest.raises(ValueError, match="per-example eps has 3 values for a batch of 16"):
        make_attack("fgsm", trained.model).run(x, y, torch.ones(3) / 255)
    with pytest.raises(ValueError, match="eps given to PGD must be finite and >= 0"):
        make_attack("pgd", trained.model, -1 / 255).run(x, y)
    with pytest.raises(ValueError, match="unknown norm 'l1'"):
        build_attack("square", trained.model, norm="l1")
