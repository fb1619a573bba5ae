"""Other libraries' attack names, norms and argument names work in evaluate and advscale eval,
and the records carry advscale's names."""

from __future__ import annotations

import pytest

from advscale.cli import main
from advscale.evaluate import evaluate
from advscale.models import save_model
from advscale.results import load_results

SMALL = {"batch_size": 50, "progress": False, "checks": False, "fuse": False, "n": 60}


def _rows(model, data, attacks, eps, norm, attack_kwargs):
    report = evaluate(
        model, data, attacks=attacks, eps=eps, norm=norm, attack_kwargs=attack_kwargs, **SMALL
    )
    return [(r["attack"], r["norm"], r["eps"], r["accuracy"]) for r in report.records]


def test_evaluate_reads_aliases_as_the_registered_names(tiny_model, test_set):
    steps = {"iter_basic": {"steps": 3}, "pgd": {"steps": 3}}
    own = _rows(tiny_model, test_set, ["iter_basic", "pgd"], [4], "linf", steps)
    n_iter = {"bim": {"n_iter": 3}, "LINF_PGD": {"n_iter": 3}}
    aliased = _rows(tiny_model, test_set, ["BIM", "Linf-PGD"], [4], "Linf", n_iter)
    names = [r[:2] for r in aliased]
    assert names == [("iter_basic", "linf"), ("pgd", "linf"), ("worst_case", "linf")]
    assert aliased == own


def test_evaluate_l2_spelled_as_torchattacks(tiny_model, test_set):
    rows = _rows(tiny_model, test_set, ["PGDL2"], [0.5], 2, {"PGDL2": {"steps": 3}})
    assert [r[:2] for r in rows] == [("pgd_l2", "l2"), ("worst_case", "l2")]


def test_unknown_alias_is_named(tiny_model, test_set):
    with pytest.raises(ValueError, match="'BIMM'"):
        evaluate(tiny_model, test_set, attacks=["BIMM"], eps=[4], **SMALL)


@pytest.fixture(scope="module")
def ckpt(tiny_model, tmp_path_factory):
    path = tmp_path_factory.mktemp("aliases") / "tiny"
    save_model(tiny_model, path, dataset="fashion-mnist")
    return path


def test_eval_command_takes_aliases(ckpt, fmnist_dir, tmp_path):
    out = tmp_path / "results.json"
    args = [
        *("eval", "--model", str(ckpt), "--data-dir", str(fmnist_dir), "--n", "40"),
        *("--out", str(out), "--device", "cpu", "--no-unbounded-check", "--eps", "4"),
        *("--attacks", "BIM,APGDT", "--norm", "LINF"),
        *("--attack-kwargs", "BIM.n_iter=2,APGDT.n_iter=3,apgdt.n_restarts=1"),
    ]
    assert main(args) == 0
    results = load_results(out)
    assert {r["attack"] for r in results.records if "attack" in r} >= {"iter_basic", "apgd_t"}
    assert {r["norm"] for r in results.records if r.get("attack")} == {"linf"}
    assert results.config["attack_kwargs"]["iter_basic"]["steps"] == 2
    assert results.config["attack_kwargs"]["apgd_t"]["steps"] == 3


@pytest.mark.parametrize(
    "spelling,norm", [("L2", "l2"), ("l2", "l2"), ("2", "l2"), ("inf", "linf"), ("Linf", "linf")]
)
def test_norm_option_is_case_blind(spelling, norm):
    from advscale.cli import build_parser

    args = build_parser().parse_args(["eval", "--model", "m", "--norm", spelling])
    assert args.norm == norm


def test_norm_option_names_a_wrong_norm(capsys):
    from advscale.cli import build_parser

    with pytest.raises(SystemExit):
        build_parser().parse_args(["eval", "--model", "m", "--norm", "l3"])
    assert "l3" in capsys.readouterr().err
