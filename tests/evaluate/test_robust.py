"""Robust accuracy: honest counting, worst case, cascade, ε trend, records in the results schema."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from advscale.errors import UserError
from advscale.evaluate import WORST_CASE, evaluate, preset_attacks
from advscale.report.text import format_table
from advscale.results import load_results

EPS = [2.0, 8.0, 16.0]


@pytest.fixture(scope="module")
def report(tiny_model, test_set):
    return evaluate(tiny_model, test_set, attacks=["fgsm", "pgd"], eps=EPS, progress=False, seed=0)


def test_misclassified_clean_examples_never_count_as_robust(report):
    clean = report.clean_mask
    assert 0 < int(clean.sum()) < len(clean), "the tiny model should get some examples wrong"
    for key, robust in report.robust_mask.items():
        assert not bool((robust & ~clean).any()), key
        assert report.record(*key)["accuracy"] == pytest.approx(float(robust.float().mean()))
        assert report.record(*key)["accuracy"] <= report.clean_accuracy
    # Iterative attacks run only on the examples the model gets right when clean.
    assert report.record("pgd", 8)["attacked"] == int(clean.sum())


def test_one_step_final_accuracy_counts_all_examples(report):
    for e in EPS:
        rec = report.record("fgsm", e)
        final = report.final_mask[("fgsm", e)]
        assert rec["accuracy_final"] == pytest.approx(float(final.float().mean()))
        # Correct clean examples agree; the final accuracy may only add misclassified ones.
        assert torch.equal(final & report.clean_mask, report.robust_mask[("fgsm", e)])
        assert rec["accuracy_final"] >= rec["accuracy"]
    assert "accuracy_final" not in report.record("pgd", 8)


def test_worst_case_is_per_example_and_below_every_attack(report):
    for e in EPS:
        worst = report.robust_mask[(WORST_CASE, e)]
        assert torch.equal(worst, report.robust_mask[("fgsm", e)] & report.robust_mask[("pgd", e)])
        wc = report.record(WORST_CASE, e)
        for a in ("fgsm", "pgd"):
            assert wc["accuracy"] <= report.record(a, e)["accuracy"]
            # No attack aims at top-5: no record claims an attacked top-5 accuracy.
            assert "top5" not in report.record(a, e) and "top5" not in wc
        assert (
            wc["forward"]
            == report.record("fgsm", e)["forward"] + report.record("pgd", e)["forward"]
        )


def test_pgd_accuracy_falls_with_eps(report):
    acc = [report.record("pgd", e)["accuracy"] for e in EPS]
    assert report.clean_accuracy > acc[0] > acc[1] > acc[2]
    assert acc[2] < 0.5 * report.clean_accuracy
    assert not [
        w
        for w in report.warnings
        if w["check"] == "accuracy_falls_with_eps" and w["attack"] == "pgd"
    ]


def test_records_follow_the_results_schema(report, tmp_path):
    keys = {
        "attack",
        "norm",
        "eps",
        "eps_unit",
        "accuracy",
        "clean_accuracy",
        "clean_top5",
        "ratio",
        "seconds",
        "forward",
        "backward",
        "n",
    }
    assert len(report.records) == len(EPS) * 3
    for r in report.records:
        assert keys <= set(r), r
        assert r["norm"] == "linf" and r["eps_unit"] == "1/255" and r["n"] == 150
        assert r["ratio"] == pytest.approx(r["accuracy"] / r["clean_accuracy"])
        assert r["clean_top5"] >= r["clean_accuracy"]
    pgd = report.record("pgd", 8)
    assert pgd["forward"] > 0 and pgd["backward"] > 0 and pgd["seconds"] > 0
    res = load_results(report.to_results({"model": "tiny"}).save(tmp_path / "r.json"))
    assert res.kind == "eval" and res.config["model"] == "tiny" and res.config["eps"] == EPS
    assert res.select(attack="pgd", eps=8.0)[0]["accuracy"] == pgd["accuracy"]
    table = format_table(report.records)
    assert "8/255" in table and "worst_case" in table


def test_same_seed_same_numbers(tiny_model, test_set):
    def run():
        r = evaluate(
            tiny_model,
            test_set,
            attacks=["pgd"],
            eps=[4],
            n=60,
            progress=False,
            seed=3,
            checks=False,
        )
        return r.robust_mask[("pgd", 4.0)]

    assert torch.equal(run(), run())


def test_cascade_same_worst_case_for_fewer_passes(tiny_model, test_set):
    kw = dict(
        attacks=["pgd", "apgd"],
        eps=[4],
        attack_kwargs={"apgd": {"steps": 10}},
        n=120,
        progress=False,
        checks=False,
    )
    full = evaluate(tiny_model, test_set, **kw)
    casc = evaluate(tiny_model, test_set, cascade=True, **kw)
    wc_full, wc_casc = full.record(WORST_CASE, 4), casc.record(WORST_CASE, 4)
    # Random starts differ with the subsets attacked, so allow a couple of examples of noise.
    assert wc_casc["accuracy"] <= wc_full["accuracy"] + 2 / 120
    assert wc_casc["forward"] < wc_full["forward"]
    assert casc.record("apgd", 4)["attacked"] < full.record("apgd", 4)["attacked"]
    # Cascade records are cumulative: the last attack's record is the worst case.
    assert casc.record("apgd", 4)["accuracy"] == wc_casc["accuracy"]
    assert casc.record("apgd", 4)["accuracy"] <= casc.record("pgd", 4)["accuracy"]


def test_tensor_pair_input_and_bad_arguments(tiny_model, test_set):
    x, y = test_set.tensors()
    r = evaluate(
        tiny_model, (x[:40], y[:40]), attacks=["fgsm"], eps=[4], progress=False, checks=False
    )
    assert r.n == 40
    with pytest.raises(UserError, match="allowed: .*pgd"):
        evaluate(tiny_model, test_set, attacks=["pgdd"], eps=[8], progress=False)
    with pytest.raises(UserError, match="pixel levels"):
        evaluate(tiny_model, test_set, attacks=["fgsm"], eps=[8 / 255], progress=False)
    with pytest.raises(UserError, match="n must be"):
        evaluate(tiny_model, test_set, attacks=["fgsm"], eps=[8], n=0, progress=False)
    with pytest.raises(UserError, match="outputs 10 classes"):
        evaluate(tiny_model, (x[:4], y[:4] + 10), attacks=["fgsm"], eps=[8], progress=False)


def test_config_says_whether_a_fused_copy_was_attacked():
    # fuse_for_eval returns a TorchScript model as it is, batch norm and all: not "fused".
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Flatten(), nn.Linear(8, 3))
    scripted = torch.jit.script(net.eval())
    x, y = torch.rand(6, 1, 4, 4), torch.tensor([0, 1, 2, 0, 1, 2])
    kw = dict(attacks=["fgsm"], eps=[8], progress=False, checks=False)
    r = evaluate(scripted, (x, y), **kw)
    assert r.config["fused"] is False and r.config["folded_batchnorm"] == 0
    # The same network as a plain module is attacked through its folded copy.
    r = evaluate(net, (x, y), **kw)
    assert r.config["fused"] is True and r.config["folded_batchnorm"] == 1


def test_strong_preset_runs_apgd_ce_then_apgd_t_then_square_as_one_cascade(tiny_model, test_set):
    from advscale.attacks import build_attack

    attacks, missing = preset_attacks("strong")
    assert (attacks, missing) == (["strong"], [])
    x, y = test_set.tensors()
    attack = build_attack("strong", tiny_model, 8 / 255, square_queries=50)
    res = attack.run(x, y)
    assert [s["attack"] for s in attack.stages] == ["apgd_ce", "apgd_t", "square"]
    # Each stage attacks only what the stages before left robust.
    left = [s["attacked"] for s in attack.stages]
    assert left == sorted(left, reverse=True)
    assert int(res.fooled.sum()) == sum(s["fooled"] for s in attack.stages)


def test_progress_is_shown_unless_turned_off(tiny_model, test_set, capsys):
    evaluate(tiny_model, test_set, attacks=["fgsm"], eps=[8], n=20, checks=False)
    assert "fgsm ε=" in capsys.readouterr().err
    evaluate(tiny_model, test_set, attacks=["fgsm"], eps=[8], n=20, checks=False, progress=False)
    assert "fgsm ε=" not in capsys.readouterr().err
