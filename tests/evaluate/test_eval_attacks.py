"""``advscale eval`` with the evaluation attacks: the reference AutoAttack as a preset, Square's
budget from the command line, L2 budgets for APGD-CE/T, PGD and Square, targeted attacks."""

from __future__ import annotations

import sys

import pytest

from advscale.cli import main
from advscale.evaluate import evaluate
from advscale.models import save_model
from advscale.results import load_results


@pytest.fixture(scope="module")
def ckpt(tiny_model, tmp_path_factory):
    path = tmp_path_factory.mktemp("eval_attacks") / "tiny"
    save_model(tiny_model, path, dataset="fashion-mnist")
    return path


def _eval(ckpt, data_dir, out, *extra: str) -> int:
    return main(
        [
            *("eval", "--model", str(ckpt), "--data-dir", str(data_dir), "--n", "30"),
            *("--out", str(out), "--device", "cpu", "--no-unbounded-check", *extra),
        ]
    )


@pytest.mark.parametrize(("norm", "eps"), [("linf", "64"), ("l2", "4")])
def test_autoattack_preset_writes_records_times_and_passes(ckpt, fmnist_dir, tmp_path, norm, eps):
    # Budgets large enough that APGD-CE breaks nearly every point: the reference's later,
    # slower stages see few points, and the test stays fast.
    out = tmp_path / "aa.json"
    assert _eval(ckpt, fmnist_dir, out, "--preset", "autoattack", "--norm", norm, "--eps", eps) == 0
    res = load_results(out)
    assert res.config["preset"] == "autoattack" and res.config["attacks"] == ["autoattack"]
    (rec,) = res.select(attack="autoattack")
    assert rec["norm"] == norm and rec["eps"] == float(eps)
    assert rec["seconds"] > 0 and rec["forward"] > 0 and rec["backward"] > 0
    assert rec["attacked"] == round(rec["clean_accuracy"] * 30)
    assert rec["accuracy"] < 0.5 * rec["clean_accuracy"]
    (wc,) = res.select(attack="worst_case")
    assert wc["accuracy"] == rec["accuracy"] and wc["forward"] == rec["forward"]


def test_autoattack_without_the_extra_is_one_line(ckpt, fmnist_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "pyautoattack", None)  # import fails
    assert _eval(ckpt, fmnist_dir, tmp_path / "aa.json", "--preset", "autoattack") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "pip install advscale[autoattack]" in err, err
    assert not (tmp_path / "aa.json").exists()


def test_square_budget_from_the_command_line(ckpt, fmnist_dir, tmp_path):
    out = tmp_path / "square.json"
    given = "square.n_queries=40,square.p_init=0.05"
    assert (
        _eval(ckpt, fmnist_dir, out, "--attacks", "square", "--eps", "8", "--attack-kwargs", given)
        == 0
    )
    res = load_results(out)
    assert res.config["attack_kwargs"]["square"] == {"n_queries": 40, "p_init": 0.05}
    (rec,) = res.select(attack="square")
    # A score-based attack: no backward pass, at most n_queries forward passes per point.
    assert rec["backward"] == 0 and 0 < rec["forward"] <= 40 * rec["attacked"]


def test_square_moves_the_progress_bar(tiny_model, test_set, capsys):
    evaluate(
        tiny_model,
        test_set,
        attacks=["square"],
        eps=[8],
        n=20,
        attack_kwargs={"square": {"n_queries": 30}},
        progress=True,
        checks=False,
    )
    assert "queries 30/30" in capsys.readouterr().err


def test_l2_attacks_measure_eps_in_l2(ckpt, fmnist_dir, tmp_path):
    out = tmp_path / "l2.json"
    attacks = ["apgd_ce", "apgd_t", "pgd", "square"]
    kwargs = "apgd_ce.steps=10,apgd_t.steps=5,apgd_t.n_targets=2,square.n_queries=50"
    assert _eval(ckpt, fmnist_dir, out, "--norm", "l2", "--eps", "0.5,2", "--attacks",
                 ",".join(attacks), "--attack-kwargs", kwargs) == 0  # fmt: skip
    res = load_results(out)
    assert all(res.config["attack_kwargs"][a]["norm"] == "l2" for a in attacks)
    assert {(r["norm"], r["eps_unit"]) for r in res.records} == {("l2", "1")}
    for e in (0.5, 2.0):
        (wc,) = res.select(attack="worst_case", eps=e)
        assert all(wc["accuracy"] <= r["accuracy"] for r in res.select(eps=e))
    worst = {r["eps"]: r["accuracy"] for r in res.select(attack="worst_case")}
    assert worst[2.0] < worst[0.5]


def test_targeted_attacks_from_the_command_line(ckpt, fmnist_dir, tmp_path):
    acc = {}
    for target in (None, "ll", "random", "3"):
        out = tmp_path / f"{target}.json"
        extra = ["--target", target] if target else []
        assert _eval(ckpt, fmnist_dir, out, "--attacks", "pgd", "--eps", "16", *extra) == 0
        (rec,) = load_results(out).select(attack="pgd")
        assert rec.get("target") == (int(target) if target == "3" else target)
        acc[target] = rec["accuracy"]
    # Any misclassification breaks a point; a targeted attack only seeks one class.
    assert all(acc[t] >= acc[None] for t in ("ll", "random", "3"))
    assert acc["ll"] > acc[None]
