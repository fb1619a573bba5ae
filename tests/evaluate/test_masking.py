"""Gradient-masking checks: each failure mode produces its warning; a plain model none."""

from __future__ import annotations

import pytest
import torch
from eval_helpers import Detached, Quantized, Softmaxed

from advscale.errors import UserError
from advscale.evaluate import evaluate
from advscale.evaluate.masking import check_outputs, check_records, check_unbounded


def _checks(report) -> set[str]:
    return {w["check"] for w in report.warnings}


def test_plain_model_passes_the_output_and_unbounded_checks(tiny_model, test_set):
    x, y = test_set.tensors()
    assert check_outputs(tiny_model, x[:64], y[:64]) == []
    keep = tiny_model(x[:80]).argmax(1) == y[:80]
    assert check_unbounded(tiny_model, x[:80][keep], y[:80][keep]) == []


def test_probability_outputs_are_flagged(tiny_model, test_set):
    r = evaluate(Softmaxed(tiny_model), test_set, attacks=["fgsm"], eps=[8], n=64, progress=False)
    assert "probabilities" in _checks(r)
    assert "softmax" in next(w["message"] for w in r.warnings if w["check"] == "probabilities")


def test_zero_gradients_are_flagged(tiny_model, test_set):
    r = evaluate(Quantized(tiny_model), test_set, attacks=["fgsm"], eps=[8], n=64, progress=False)
    assert "zero_gradients" in _checks(r)
    x, y = test_set.tensors()
    model = Quantized(tiny_model)
    keep = model(x[:80]).argmax(1) == y[:80]
    # PGD at eps=255/255 gets no gradient signal: only its random start can fool the model.
    assert [w["check"] for w in check_unbounded(model, x[:80][keep], y[:80][keep], steps=3)] == [
        "unbounded"
    ]


def test_detached_input_is_flagged_and_gradient_attacks_refuse_it(tiny_model, test_set):
    model = Detached(tiny_model)
    r = evaluate(model, test_set, attacks=["random_sign"], eps=[8], n=64, progress=False)
    assert "zero_gradients" in _checks(r)
    with pytest.raises(UserError, match="gradient-free attacks"):
        evaluate(model, test_set, attacks=["fgsm"], eps=[8], n=64, progress=False)


def _records(acc: dict[str, dict[float, float]]) -> list[dict]:
    return [{"attack": a, "eps": e, "accuracy": v} for a, by in acc.items() for e, v in by.items()]


def test_record_checks_see_rising_accuracy_and_one_step_beating_iterative():
    clean = torch.ones(100, dtype=torch.bool)
    acc = {"fgsm": {2.0: 0.5, 8.0: 0.3}, "iter_basic": {2.0: 0.6, 8.0: 0.7}}
    found = check_records(_records(acc), {}, clean, attacks=list(acc), cascade=False)
    assert {(w["check"], w["attack"]) for w in found} == {
        ("accuracy_falls_with_eps", "iter_basic"),
        ("one_step_vs_iterative", "fgsm"),
    }
    flat = {"pgd": {2.0: 0.50, 16.0: 0.50}}
    assert [
        w["check"] for w in check_records(_records(flat), {}, clean, attacks=["pgd"], cascade=False)
    ] == ["accuracy_falls_with_eps"]
    # Iter. l.l. aims at the least-likely class: leaving more points correct than step l.l.
    # is expected of it, not a masking sign.
    targeted = {"step_ll": {2.0: 0.8, 8.0: 0.59}, "iter_ll": {2.0: 0.85, 8.0: 0.65}}
    assert check_records(_records(targeted), {}, clean, attacks=list(targeted), cascade=False) == []
    falling = {"pgd": {2.0: 0.5, 16.0: 0.1}, "fgsm": {2.0: 0.55, 16.0: 0.2}}
    assert check_records(_records(falling), {}, clean, attacks=list(falling), cascade=False) == []


def test_gradient_free_attack_beating_gradient_attacks_is_flagged():
    clean = torch.ones(100, dtype=torch.bool)
    pgd = torch.ones(100, dtype=torch.bool)
    noise = pgd.clone()
    noise[:10] = False  # noise breaks 10 points PGD could not
    masks = {("pgd", 8.0): pgd, ("random_sign", 8.0): noise}
    recs = [
        {"attack": "pgd", "eps": 8.0, "accuracy": 1.0},
        {"attack": "random_sign", "eps": 8.0, "accuracy": 0.9},
    ]
    found = check_records(recs, masks, clean, attacks=["pgd", "random_sign"], cascade=False)
    assert [(w["check"], w["share"]) for w in found] == [("gradient_free_vs_gradient", 0.1)]
    masks[("random_sign", 8.0)] = pgd.clone()
    assert check_records(recs, masks, clean, attacks=["pgd", "random_sign"], cascade=False) == []
