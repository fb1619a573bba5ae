"""Labels of any integer type are class indices: int32 labels (NumPy's default on some
platforms, many data loaders') attack and evaluate exactly as int64 ones do."""

from __future__ import annotations

import pytest
import torch

from advscale.attacks import build_attack
from advscale.evaluate import evaluate


@pytest.fixture(scope="module")
def model_and_data(fmnist, tiny_trainer):
    model = tiny_trainer(fmnist("train", n=1000, seed=0))
    x, y = fmnist("test", n=16, seed=3).tensors()
    return model, x, y


@pytest.mark.parametrize("name", ["fgsm", "pgd", "apgd", "step_ll", "apgd_t"])
def test_attacks_take_int32_labels_as_int64_ones(model_and_data, name):
    model, x, y = model_and_data
    kwargs = {"steps": 3} if name != "fgsm" and name != "step_ll" else {}
    runs = []
    for labels in (y.long(), y.int()):
        torch.manual_seed(0)
        attack = build_attack(name, model, 8 / 255, seed=0, **kwargs)
        runs.append(attack(x, labels))
    assert torch.equal(runs[0], runs[1])


def test_evaluate_takes_int32_labels_as_int64_ones(model_and_data):
    model, x, y = model_and_data
    reports = [
        evaluate(model, (x, labels), attacks=["fgsm", "pgd"], eps=[8], seed=0, progress=False)
        for labels in (y.long(), y.int())
    ]
    assert [r["accuracy"] for r in reports[0].records] == [
        r["accuracy"] for r in reports[1].records
    ]
    assert reports[0].clean_accuracy == reports[1].clean_accuracy
