"""Records against numbers computed by hand: FGSM-pred's robust and final accuracy, Iter. basic's
robust accuracy, where an example counts as broken when any iterate fooled it; the label-leak
verdict against every control."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from advscale.errors import UserError
from advscale.evaluate import evaluate, leak_flag
from advscale.evaluate.label_leak import prefers_perturbed_flag


def by_hand_grad(model, x, y):
    x = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(F.cross_entropy(model(x), y, reduction="sum"), x)
    return g


def predict(model, x):
    with torch.no_grad():
        return model(x).argmax(1)


@pytest.fixture(scope="module")
def data(test_set):
    return test_set.tensors()


def test_one_step_record_is_clean_correct_and_still_correct(tiny_model, test_set, data):
    """FGSM-pred by hand, X + ε·sign(∇J(X, predicted class)): it moves some misclassified
    examples to their true class; those count in ``accuracy_final``, never in ``accuracy``."""
    x, y = data
    eps = 8.0
    pred = predict(tiny_model, x)
    x_adv = (x + eps / 255 * by_hand_grad(tiny_model, x, pred).sign()).clamp(0, 1)
    clean = pred == y
    after = predict(tiny_model, x_adv) == y
    assert bool((after & ~clean).any()), "FGSM-pred should fix some misclassified example"
    report = evaluate(
        tiny_model,
        test_set,
        attacks=["fgsm_pred"],
        eps=[eps],
        progress=False,
        fuse=False,
        checks=False,
    )
    rec = report.record("fgsm_pred", eps)
    assert rec["accuracy"] == pytest.approx(float((clean & after).float().mean()), abs=1e-6)
    assert rec["accuracy_final"] == pytest.approx(float(after.float().mean()), abs=1e-6)
    assert rec["clean_accuracy"] == pytest.approx(float(clean.float().mean()), abs=1e-6)


def test_iterative_record_counts_an_example_broken_if_any_iterate_fooled_it(
    tiny_model, test_set, data
):
    """Iter. basic by hand, X_{n+1} = Clip_{X,ε}(X_n + α·sign(∇J(X_n, y))), with a step large
    enough that some iterates fool the model and later ones do not: those examples are broken."""
    x, y = data
    eps, steps = 16.0, 6
    clean = predict(tiny_model, x) == y

    def by_hand(alpha):
        xn, fooled_any = x.clone(), torch.zeros_like(clean)
        for _ in range(steps):
            step = xn + alpha * by_hand_grad(tiny_model, xn, y).sign()
            xn = torch.min(torch.max(step, x - eps / 255), x + eps / 255).clamp(0, 1)
            fooled_any |= predict(tiny_model, xn) != y
        return fooled_any, predict(tiny_model, xn) != y

    # The first step size at which some example is fooled by an iterate and recovers by the
    # last (large steps overshoot): the case a last-iterate count gets wrong.
    for alpha in (8 / 255, 12 / 255, 16 / 255, 24 / 255, 32 / 255):
        fooled_any, fooled_last = by_hand(alpha)
        if bool((fooled_any & ~fooled_last & clean).any()):
            break
    else:
        pytest.fail("no step size lets an example recover: nothing to test")
    kwargs = {"steps": steps, "alpha": alpha}
    report = evaluate(
        tiny_model,
        test_set,
        attacks=["iter_basic"],
        eps=[eps],
        attack_kwargs={"iter_basic": kwargs},
        progress=False,
        fuse=False,
        checks=False,
    )
    expected = float((clean & ~fooled_any).float().mean())
    assert report.record("iter_basic", eps)["accuracy"] == pytest.approx(expected, abs=1e-6)
    # Without early stopping the attack records only its last iterate: refused.
    with pytest.raises(UserError, match=r"attack_kwargs\['iter_basic'\]: early_stop cannot"):
        evaluate(
            tiny_model,
            test_set,
            attacks=["iter_basic"],
            eps=[eps],
            attack_kwargs={"iter_basic": {**kwargs, "early_stop": False}},
            progress=False,
        )


def test_leak_needs_fgsm_to_beat_every_control_and_preferring_needs_one():
    beats = {"p_value": 0.001, "diff": 0.05}
    ties = {"p_value": 0.6, "diff": 0.0}
    assert leak_flag({"fgsm_pred": beats, "random_sign": beats})
    assert not leak_flag({"fgsm_pred": beats, "random_sign": ties})
    assert not leak_flag({"fgsm_pred": ties, "random_sign": beats})
    assert prefers_perturbed_flag({"fgsm_pred": ties, "random_sign": beats})
    assert not prefers_perturbed_flag({"fgsm_pred": ties, "random_sign": ties})
