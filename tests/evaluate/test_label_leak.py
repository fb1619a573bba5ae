"""Label leaking: the flag logic, a constructed leaking model, and a clean model that does not leak."""

from __future__ import annotations

import pytest
from eval_helpers import ReversedGradient

from advscale.evaluate import label_leak, leak_flag


@pytest.mark.parametrize(
    ("clean", "fgsm", "pred", "leak"),
    [
        (0.766, 0.862, 0.70, True),  # paper A: FGSM-trained model, more accurate on FGSM than clean
        (0.80, 0.75, 0.70, True),  # true-label examples 5 points above label-free ones
        (0.80, 0.71, 0.70, False),  # within the margin
        (0.90, 0.30, 0.31, False),  # a normal model
    ],
)
def test_leak_flag(clean, fgsm, pred, leak):
    assert leak_flag(clean, fgsm, pred, margin=0.02) is leak


def test_clean_trained_model_does_not_leak(tiny_model, test_set):
    rows = label_leak(tiny_model, test_set, [4, 16])
    assert [r["eps"] for r in rows] == [4.0, 16.0]
    for r in rows:
        assert not r["leak"], r
        assert r["fgsm_accuracy"] < r["clean_accuracy"]
        assert r["eps_unit"] == "1/255" and r["n"] == 150
        assert 0 <= r["leaked"] <= 1 - r["clean_accuracy"]  # leaks happen only on clean errors


def test_model_that_decodes_the_true_label_is_flagged(tiny_model, test_set):
    rows = label_leak(ReversedGradient(tiny_model), test_set, [8])
    r = rows[0]
    assert r["leak"]
    assert r["fgsm_accuracy"] > r["clean_accuracy"]
    assert r["leaked"] > 0.02
