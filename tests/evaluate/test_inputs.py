"""What evaluate takes in: ε in pixel levels, attack arguments, data in any batch form, and the
door checks that stop a meaningless evaluation before any attack runs."""

from __future__ import annotations

import copy
import zlib

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from advscale.errors import UserError
from advscale.evaluate import evaluate
from advscale.evaluate.inputs import (
    as_tensors,
    attack_seed,
    check_pixel_eps,
    merge_attack_kwargs,
)
from advscale.evaluate.transfer_matrix import transfer_matrix

QUICK = {"progress": False, "checks": False}


def _run(model, data, **kw):
    return evaluate(model, data, attacks=kw.pop("attacks", ["fgsm", "pgd"]), eps=[4], **QUICK, **kw)


def test_a_dataloader_gives_the_same_numbers_as_the_tensor_pair(tiny_model, test_set):
    x, y = test_set.tensors()
    pair = _run(tiny_model, (x, y), batch_size=64)
    loader = DataLoader(TensorDataset(x, y), batch_size=32, shuffle=False)
    from_loader = _run(tiny_model, loader, batch_size=64)
    assert from_loader.records == [
        {**r, "seconds": s["seconds"]}
        for r, s in zip(pair.records, from_loader.records, strict=True)
    ]
    # n stops reading the loader early; a plain list of batches works too.
    batches = [(x[i : i + 25], y[i : i + 25]) for i in range(0, 100, 25)]
    assert _run(tiny_model, batches, n=60).n == 60


@pytest.mark.parametrize(
    ("spoil", "match"),
    [
        (lambda x, y: (x.index_fill(0, torch.tensor([3]), float("nan")), y), "1 image.* NaN"),
        (lambda x, y: (x * 2, y), r"must be in \[0, 1\], got range"),
        (lambda x, y: (x, y.float()), "labels must be integer class indices"),
        (lambda x, y: (x, y - 1), "label -1 is negative"),
        (lambda x, y: (x, y + 10), r"label 1\d is outside \[0, 10\): the model outputs 10"),
        (lambda x, y: (x.double(), y[:-1]), r"images \(N, C, H, W\) and labels \(N,\)"),
    ],
)
def test_bad_data_is_refused_at_the_door(tiny_model, test_set, spoil, match):
    x, y = test_set.tensors()
    x, y = spoil(x[:20].float() / 255 if x.dtype == torch.uint8 else x[:20], y[:20])
    with pytest.raises(UserError, match=match):
        _run(tiny_model, (x, y))


def test_non_finite_logits_on_clean_data_stop_the_evaluation(tiny_model, test_set):
    broken = copy.deepcopy(tiny_model)
    with torch.no_grad():
        next(p for p in broken.parameters() if p.ndim > 1).fill_(float("inf"))
    with pytest.raises(UserError, match=r"non-finite logits \(NaN or inf\) on clean examples 0-"):
        _run(broken, test_set)


def test_eps_fractions_are_refused_unless_the_unit_says_so(tiny_model, test_set):
    with pytest.raises(UserError, match=r"eps: eps \[0.031\] look like \[0, 1\].*pass 8 for 8/255"):
        evaluate(tiny_model, test_set, attacks=["fgsm"], eps=0.031, **QUICK)
    report = evaluate(
        tiny_model, test_set, attacks=["fgsm"], eps=[4 / 255], eps_unit="1", n=30, **QUICK
    )
    assert report.config["eps"] == [pytest.approx(4.0)]
    # A sub-level budget beside a normal one is a deliberate choice, not a unit mistake.
    assert check_pixel_eps([0.5, 8]) == [0.5, 8.0]
    assert check_pixel_eps([0, 0, 8]) == [0.0, 8.0]
    with pytest.raises(UserError, match=r"compare.eps: eps must be pixel levels in \(0, 255\]"):
        check_pixel_eps([0, 8], "compare.eps", positive=True)


def test_attack_arguments_are_checked_before_any_model_runs(tiny_model, test_set):
    with pytest.raises(UserError, match=r"attack_kwargs\['pgd'\]: .*'stepz'"):
        _run(tiny_model, test_set, attack_kwargs={"pgd": {"stepz": 3}})
    with pytest.raises(UserError, match=r"attack_kwargs\['pgd'\]: eps cannot be set here"):
        _run(tiny_model, test_set, attack_kwargs={"pgd": {"eps": 0.1}})
    assert merge_attack_kwargs(["pgd", "fgsm"], {"pgd": {"steps": 3}}) == {
        "pgd": {"steps": 3, "restarts": 1},
        "fgsm": {},
    }
    models = {"a": tiny_model}
    with pytest.raises(UserError, match=r"attack_kwargs\['pgd'\]: early_stop cannot be set"):
        transfer_matrix(
            models, test_set, ["pgd"], [4], n=10, attack_kwargs={"pgd": {"early_stop": True}}
        )


def test_attack_seeds_are_stable_and_distinct_per_source_model():
    # Stored results were produced with these seeds (evaluate: "pgd@8", transfer_matrix:
    # "<source>/pgd@8"): the rule must not drift.
    assert attack_seed(3, "pgd", 8.0) == (3 * 1_000_003 + zlib.crc32(b"pgd@8")) % 2**31
    assert attack_seed(3, "pgd", 8, scope="a") == (3 * 1_000_003 + zlib.crc32(b"a/pgd@8")) % 2**31
    seeds = {attack_seed(0, "pgd", 8), attack_seed(0, "pgd", 4), attack_seed(1, "pgd", 8)}
    seeds |= {attack_seed(0, "pgd", 8, scope="a"), attack_seed(0, "pgd", 8, scope="b")}
    assert len(seeds) == 5


def test_as_tensors_refuses_unknown_forms_naming_what_it_takes():
    with pytest.raises(UserError, match="ImageDataset, an \\(images, labels\\) pair .*DataLoader"):
        as_tensors(42)
    with pytest.raises(UserError, match="the data yields no batches"):
        as_tensors([])
    x = torch.rand(4, 1, 8, 8)
    with pytest.raises(UserError, match="data batch 1 holds .* every batch must match"):
        as_tensors([(x, torch.zeros(4, dtype=torch.long)), (x[:, :, :4], torch.zeros(4).long())])
