"""``advscale eval`` options: results never overwritten by accident, attack arguments from the
command line, L2 budgets, and the help that lists what can be chosen."""

from __future__ import annotations

import argparse

import pytest

from advscale.cli import build_parser, main
from advscale.commands.eval import attack_kwargs, target_choice
from advscale.models import save_model
from advscale.results import load_results


@pytest.fixture(scope="module")
def ckpt(tiny_model, tmp_path_factory):
    path = tmp_path_factory.mktemp("eval_command") / "tiny"
    save_model(tiny_model, path, dataset="fashion-mnist")
    return path


def _args(ckpt, data_dir, out, *extra: str) -> list[str]:
    return [
        *("eval", "--model", str(ckpt), "--data-dir", str(data_dir), "--n", "40"),
        *("--out", str(out), "--device", "cpu", "--no-unbounded-check", *extra),
    ]


def test_eval_refuses_to_overwrite_results_without_force(ckpt, fmnist_dir, tmp_path, capsys):
    out = tmp_path / "results.json"
    out.write_text("{}")
    args = _args(ckpt, fmnist_dir, out, "--attacks", "fgsm", "--eps", "8")
    assert main(args) == 2
    err = capsys.readouterr().err
    assert str(out) in err and "--force" in err and out.read_text() == "{}"
    assert main([*args, "--force"]) == 0
    assert load_results(out).select(attack="fgsm", eps=8.0)


def test_attack_kwargs_from_the_command_line_reach_the_attack(ckpt, fmnist_dir, tmp_path):
    out = tmp_path / "r.json"
    given = "pgd.steps=3,pgd.random_start=false,apgd.steps=2"
    assert main(_args(ckpt, fmnist_dir, out, "--attacks", "pgd,apgd", "--eps", "8",
                      "--attack-kwargs", given)) == 0  # fmt: skip
    res = load_results(out)
    assert res.config["attack_kwargs"]["pgd"] == {"steps": 3, "restarts": 1, "random_start": False}
    assert res.config["attack_kwargs"]["apgd"]["steps"] == 2
    # Three PGD steps without random start: one forward and backward pass per step and image
    # still attacked (early stopping), at most 3 per attacked image.
    (pgd,) = res.select(attack="pgd", eps=8.0)
    assert 0 < pgd["backward"] <= 3 * pgd["attacked"]


def test_attack_kwargs_parsing():
    assert attack_kwargs("square.n_queries=1000,square.p_init=0.05") == {
        "square": {"n_queries": 1000, "p_init": 0.05}
    }
    # Values are YAML: lists keep their commas, 1e-3 is a number, words stay text.
    assert attack_kwargs("a.x=[1, 2],a.lr=1e-3,b.loss=dlr") == {
        "a": {"x": [1, 2], "lr": 1e-3},
        "b": {"loss": "dlr"},
    }
    for bad in ("steps=3", "pgd.steps", ".steps=1"):
        with pytest.raises(argparse.ArgumentTypeError, match="ATTACK.ARGUMENT=VALUE"):
            attack_kwargs(bad)
    assert [target_choice(t) for t in ("ll", "random", "3")] == ["ll", "random", 3]
    with pytest.raises(argparse.ArgumentTypeError, match="ll, random or a class index"):
        target_choice("least")


def test_unknown_attack_argument_is_one_line_naming_it(ckpt, fmnist_dir, tmp_path, capsys):
    args = _args(ckpt, fmnist_dir, tmp_path / "r.json", "--attacks", "pgd", "--eps", "8")
    assert main([*args, "--attack-kwargs", "pgd.stepz=3"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "'pgd'" in err and "stepz" in err, err
    assert not (tmp_path / "r.json").exists()


def test_l2_evaluation_keeps_l2_radii_and_says_the_norm(ckpt, fmnist_dir, tmp_path):
    out = tmp_path / "l2.json"
    args = _args(ckpt, fmnist_dir, out, "--norm", "l2", "--eps", "0.5,2", "--attacks", "pgd")
    assert main([*args, "--save-adv", str(tmp_path / "adv")]) == 0
    # The examples kept are L2 ones: within each radius, and labelled in its unit.
    from safetensors import safe_open

    with safe_open(str(tmp_path / "adv" / "examples.safetensors"), "pt") as f:
        assert f.metadata()["eps_unit"] == "1"
        x, x_adv, eps = f.get_tensor("x"), f.get_tensor("x_adv"), f.get_tensor("eps")
    assert len(eps) and bool(((x_adv - x).flatten(1).norm(dim=1) <= eps + 1e-4).all())
    assert bool(((x_adv - x).flatten(1).abs().amax(1) > 2 / 255).any())  # not read as 0.5/255
    res = load_results(out)
    assert res.config["norm"] == "l2" and res.config["eps"] == [0.5, 2.0]
    assert res.config["attack_kwargs"]["pgd"]["norm"] == "l2"
    for r in res.records:
        assert r["norm"] == "l2" and r["eps_unit"] == "1" and r["eps"] in (0.5, 2.0)
    acc = {r["eps"]: r["accuracy"] for r in res.select(attack="pgd")}
    # An L2 radius of 2 is far more than 2/255 per pixel could move: accuracy falls with it.
    assert acc[2.0] < acc[0.5] <= res.summary["clean_accuracy"]
    assert res.summary["norm"] == "l2" and set(res.summary["worst_case"]) == {"0.5", "2"}


def test_an_attack_of_the_other_norm_is_refused(ckpt, fmnist_dir, tmp_path, capsys):
    args = _args(ckpt, fmnist_dir, tmp_path / "r.json", "--attacks", "pgd_l2", "--eps", "8")
    assert main(args) == 2
    assert "--norm l2" in capsys.readouterr().err
    args = _args(ckpt, fmnist_dir, tmp_path / "r.json", "--attacks", "pgd", "--eps", "8")
    assert main([*args, "--attack-kwargs", "pgd.norm=L2"]) == 2
    assert "one evaluation measures ε in one norm" in capsys.readouterr().err


def test_help_lists_attack_names_presets_and_defaults(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["eval", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "apgd_t" in text and "iter_ll" in text and "square" in text
    assert "{custom,strong,autoattack}" in text and "(default: 500)" in text
    assert "random draws (default: 0)" in text
    assert "(default: fgsm,step_ll,iter_basic,iter_ll,pgd,apgd)" in text
    with pytest.raises(SystemExit):
        build_parser().parse_args(["data", "fetch", "--help"])
    assert "--base-url" in capsys.readouterr().out


def test_apgd_steps_reach_the_strong_cascade(ckpt, fmnist_dir, tmp_path):
    out = tmp_path / "strong.json"
    args = _args(ckpt, fmnist_dir, out, "--preset", "strong", "--eps", "8", "--apgd-steps", "3")
    assert main(args) == 0
    res = load_results(out)
    assert res.config["attack_kwargs"]["strong"]["ce_steps"] == 3
    assert res.config["attack_kwargs"]["strong"]["t_steps"] == 3


def test_apgd_steps_cannot_weaken_the_reference_autoattack(ckpt, fmnist_dir, tmp_path, capsys):
    out = tmp_path / "aa.json"
    args = _args(ckpt, fmnist_dir, out, "--preset", "autoattack", "--eps", "8", "--apgd-steps", "5")
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert "--apgd-steps" in err and len(err.splitlines()) == 1 and not out.exists()
