"""Label leaking told apart from a preference for perturbed inputs, on models trained for seconds.

- an MLP trained only on true-label FGSM examples of scikit-learn digits at ε = 128/255 learns
  to read the label off its own perturbation: a leak;
- a Fashion-MNIST CNN trained only on random sign noise at ε = 64/255 is more accurate on any
  large label-free perturbation than on clean images: prefers_perturbed, not a leak;
- clean-trained models: neither.
"""

from __future__ import annotations

from collections.abc import Callable
from math import comb

import pytest
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from advscale.attacks import FGSM, RandomSign
from advscale.data import BatchLoader, ImageDataset, load_digits
from advscale.errors import UserError
from advscale.evaluate import label_leak, leak_flag
from advscale.evaluate.label_leak import (
    LEAK_CONTROLS,
    label_leak_summary,
    mcnemar_one_sided,
    paired_difference,
    prefers_perturbed_flag,
)
from advscale.models import Classifier, build_classifier

LEAK_EPS = 128.0  # digits: large enough for the MLP to decode the FGSM sign pattern
NOISE_EPS = 64.0  # Fashion-MNIST: the budget of the demo's FGSM model
N_TEST = 500

Perturb = Callable[[nn.Module, Tensor, Tensor], Tensor]


def _train(
    model: nn.Module, train: ImageDataset, perturb: Perturb | None, epochs: int
) -> nn.Module:
    """Adam (lr 3e-3, batch 64) on ``perturb(model, x, y)`` only (clean ``x`` when None)."""
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for epoch in range(epochs):
        loader = BatchLoader(train, 64, seed=0)
        loader.set_epoch(epoch)
        for x, y in loader:
            if perturb is not None:
                x = perturb(model, x, y)  # attacks leave the model in the mode they found
            model.train()
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(model(x), y).backward()
            opt.step()
    return model.eval()


def _digits_mlp(perturb: Perturb | None) -> nn.Module:
    torch.manual_seed(0)
    train = load_digits("train", image_size=8)
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
    return _train(Classifier(net, train.mean, train.std), train, perturb, epochs=10)


def _fgsm(eps: float) -> Perturb:
    return lambda model, x, y: FGSM(model, eps / 255)(x, y)


@pytest.fixture(scope="module")
def digits_test() -> ImageDataset:
    return load_digits("test", image_size=8)


@pytest.fixture(scope="module")
def fmnist_test(fmnist: Callable[..., ImageDataset]) -> ImageDataset:
    return fmnist("test", n=N_TEST, seed=1)


def test_model_trained_on_true_label_fgsm_leaks(digits_test):
    model = _digits_mlp(_fgsm(LEAK_EPS))
    (r,) = label_leak(model, digits_test, [LEAK_EPS])
    assert r["leak"] and not r["prefers_perturbed"], r
    # It reads the label: right on its FGSM examples far more often than on clean ones, and
    # the label-free perturbations of the same size do not help it.
    assert r["fgsm_accuracy"] > r["clean_accuracy"] + 0.2
    for c in LEAK_CONTROLS:
        t = r["leak_tests"][c]
        assert t["p_value"] < 1e-6 and t["ci_low"] > 0.1, (c, t)
        assert r[f"{c}_accuracy"] < r["fgsm_accuracy"] - 0.1
    assert r["leak_p_value"] == max(t["p_value"] for t in r["leak_tests"].values())
    assert label_leak_summary([r])["label_leak_eps"] == [LEAK_EPS]


def test_model_trained_on_noise_prefers_perturbed_and_does_not_leak(
    fmnist: Callable[..., ImageDataset], fmnist_test: ImageDataset
):
    train = fmnist("train", n=2000, seed=0)
    torch.manual_seed(0)
    model = build_classifier(
        "small_cnn", {"num_classes": 10, "in_channels": 1, "width": 0.5}, train.mean, train.std
    )
    noise = lambda m, x, y: RandomSign(m, NOISE_EPS / 255)(x, y)  # noqa: E731
    (r,) = label_leak(_train(model, train, noise, epochs=1), fmnist_test, [NOISE_EPS])
    assert r["prefers_perturbed"] and not r["leak"], r
    assert r["random_sign_accuracy"] > r["clean_accuracy"] + 0.05
    # The true label makes its one-step example worse than label-free ones, not better.
    assert r["leak_tests"]["random_sign"]["ci_high"] < 0
    assert r["leak_p_value"] > 0.5


@pytest.mark.parametrize("which", ["digits_mlp", "fmnist_cnn"])
def test_clean_model_neither_leaks_nor_prefers_perturbed(which, request):
    if which == "digits_mlp":
        model, test, eps = _digits_mlp(None), request.getfixturevalue("digits_test"), [16, 64]
    else:
        model, test = request.getfixturevalue("tiny_model"), request.getfixturevalue("fmnist_test")
        eps = [16, NOISE_EPS]
    rows = label_leak(model, test, eps)
    assert [r["eps"] for r in rows] == [float(e) for e in eps]
    for r in rows:
        assert not r["leak"] and not r["prefers_perturbed"], r
        assert r["fgsm_accuracy"] < r["clean_accuracy"]
        assert r["eps_unit"] == "1/255" and r["n"] == len(test)
        assert 0 <= r["leaked"] <= 1 - r["clean_accuracy"]  # leaks happen only on clean errors
        for c, t in r["leak_tests"].items():
            # Discordant counts, accuracies and the difference agree, and the interval holds it.
            assert t["a_only"] - t["b_only"] == round(len(test) * t["diff"])
            assert t["diff"] == pytest.approx(r["fgsm_accuracy"] - r[f"{c}_accuracy"])
            assert t["ci_low"] <= t["diff"] <= t["ci_high"]
    assert label_leak_summary(rows) == {
        "label_leak": False,
        "prefers_perturbed": False,
        "label_leak_eps": [],
        "prefers_perturbed_eps": [],
    }


def _mask(acc: float, n: int, gen: torch.Generator) -> Tensor:
    m = torch.zeros(n, dtype=torch.bool)
    m[torch.randperm(n, generator=gen)[: round(acc * n)]] = True
    return m


def test_demo_fgsm_model_numbers_are_no_leak():
    # The demo's FGSM(ε=64)-trained model on 1000 images: more accurate on FGSM examples than
    # clean (56.8 vs 52.3), but less than on every label-free perturbation of the same size.
    gen = torch.Generator().manual_seed(0)
    clean = _mask(0.523, 1000, gen)
    fgsm = _mask(0.568, 1000, gen)
    ctrl = {"fgsm_pred": 0.610, "random_sign": 0.671, "step_rnd": 0.670}
    masks = {c: _mask(a, 1000, gen) for c, a in ctrl.items()}
    assert not leak_flag({c: paired_difference(fgsm, m) for c, m in masks.items()})
    assert prefers_perturbed_flag({c: paired_difference(m, clean) for c, m in masks.items()})
    # FGSM above clean on its own is not a leak either: there is no label-free reference.
    assert paired_difference(fgsm, clean)["p_value"] < 0.05
    assert not leak_flag({})


@pytest.mark.parametrize(("a_only", "b_only"), [(0, 0), (9, 1), (1, 9), (30, 10), (600, 500)])
def test_mcnemar_is_the_exact_binomial_tail(a_only, b_only):
    n = a_only + b_only
    want = sum(comb(n, k) for k in range(a_only, n + 1)) / 2**n
    assert mcnemar_one_sided(a_only, b_only) == pytest.approx(want, rel=1e-12)


def test_effect_below_minimum_is_not_flagged():
    # 5000 examples: 60 discordant pairs against 20 is significant, but only 0.8 points.
    t = {"p_value": mcnemar_one_sided(60, 20), "diff": 40 / 5000}
    assert t["p_value"] < 1e-4
    assert not leak_flag({"fgsm_pred": t}) and leak_flag({"fgsm_pred": t}, min_effect=0.005)


@pytest.mark.parametrize("controls", [[], ["fgsm"], ["pgd"], ["fgm_l2"]])
def test_controls_must_be_label_free_one_step_attacks(controls, digits_test):
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    with pytest.raises(UserError, match="controls"):
        label_leak(model, digits_test, [8], controls=controls)


def test_difference_interval_is_agresti_min():
    """100 pairs, 12 right only under a, 3 only under b: with 0.5 added to each cell,
    centre (12.5 − 3.5) / 102, half-width z·√(12.5 + 3.5 − 9²/102) / 102, z = 1.95996 at 95%
    (0.01331, 0.16316) and z = 1.64485 at 90% (0.02535, 0.15112), worked out by hand."""
    a = torch.zeros(100, dtype=torch.bool)
    b = torch.zeros(100, dtype=torch.bool)
    a[:12] = True
    b[12:15] = True
    a[50:], b[50:] = True, True  # concordant pairs do not move the interval's centre
    t = paired_difference(a, b)
    assert (t["a_only"], t["b_only"], t["diff"]) == (12, 3, 0.09)
    assert (t["ci_low"], t["ci_high"]) == pytest.approx((0.013306, 0.163165), abs=2e-6)
    t = paired_difference(a, b, confidence=0.9)
    assert (t["ci_low"], t["ci_high"]) == pytest.approx((0.025352, 0.151118), abs=2e-6)


def test_no_minimum_effect_is_allowed(digits_test):
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    (row,) = label_leak(model, digits_test, [8], min_effect=0.0, n=50)
    assert row["min_effect"] == 0.0
    with pytest.raises(UserError, match="min_effect"):
        label_leak(model, digits_test, [8], min_effect=-0.01, n=50)
