"""``advscale eval`` end to end on a saved checkpoint and real Fashion-MNIST."""

from __future__ import annotations

import pytest

from advscale.cli import main
from advscale.models import save_model
from advscale.results import load_results


def _eval_args(ckpt, data_dir, out, *extra: str) -> list[str]:
    return [
        "eval",
        *("--model", str(ckpt), "--data-dir", str(data_dir), "--n", "60"),
        *("--out", str(out), "--device", "cpu", *extra),
    ]


def test_eval_command_writes_every_attack_and_eps(tiny_model, fmnist_dir, tmp_path, capsys):
    ckpt = tmp_path / "tiny"
    save_model(tiny_model, ckpt, dataset="fashion-mnist")
    out = tmp_path / "eval" / "results.json"
    rc = main(
        _eval_args(
            ckpt, fmnist_dir, out, "--attacks", "fgsm,apgd", "--eps", "2,8", "--apgd-steps", "5"
        )
    )
    assert rc == 0
    printed = capsys.readouterr().out
    assert "8/255" in printed and "worst_case" in printed and str(out) in printed
    res = load_results(out)
    assert res.kind == "eval" and res.complete and res.environment["torch"]
    for attack in ("fgsm", "apgd", "worst_case"):
        for eps in (2.0, 8.0):
            (rec,) = res.select(attack=attack, eps=eps)
            assert rec["n"] == 60 and 0 <= rec["accuracy"] <= rec["clean_accuracy"]
    assert res.config["attack_kwargs"]["apgd"]["steps"] == 5
    assert "unbounded" in res.summary["checks"]
    assert res.config["fused"] and res.config["folded_batchnorm"] == 5

    # --no-fuse attacks the model as loaded (tests/models/test_fuse.py: the same numbers).
    plain = tmp_path / "plain.json"
    args = _eval_args(ckpt, fmnist_dir, plain, "--attacks", "fgsm", "--eps", "8", "--n", "20")
    assert main([*args, "--no-fuse", "--no-unbounded-check"]) == 0
    res_plain = load_results(plain)
    assert not res_plain.config["fused"] and res_plain.config["folded_batchnorm"] == 0
    for attack in ("fgsm", "worst_case"):
        (rec,) = res_plain.select(attack=attack, eps=8.0)
        assert rec["n"] == 20


def test_eval_command_errors_are_one_clean_line(tiny_model, fmnist_dir, tmp_path, capsys):
    ckpt = tmp_path / "tiny"
    save_model(tiny_model, ckpt)
    base = ["eval", "--data-dir", str(fmnist_dir), "--out", str(tmp_path / "r.json")]
    cases = [
        (["--model", str(ckpt), "--attacks", "fgsm,bogus"], "allowed:"),
        (["--model", str(tmp_path / "missing")], str(tmp_path / "missing")),
        (["--model", str(ckpt), "--n", "0"], "--n"),
    ]
    for extra, expected in cases:
        assert main(base + extra) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and expected in err, err
    assert not (tmp_path / "r.json").exists()


def test_eval_command_refuses_eps_fractions_and_out_of_range(tmp_path, capsys):
    base = ["eval", "--model", str(tmp_path / "m"), "--out", str(tmp_path / "r.json")]
    for extra, expected in [
        (["--eps", "0.031"], "--eps: eps [0.031] look like [0, 1] units; ε is in pixel levels"),
        (["--eps", "4,300"], "--eps: eps must be pixel levels in [0, 255]"),
        (["--norm", "l2"], "--norm l2 needs --eps"),
        (["--norm", "l2", "--eps", "0.5,-1"], "L2 eps must be finite radii >= 0"),
    ]:
        assert main([*base, *extra]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and expected in err, err
    with pytest.raises(SystemExit) as e:
        main([*base, "--eps", "4,x"])
    assert e.value.code == 2 and "--eps must be comma-separated numbers" in capsys.readouterr().err
