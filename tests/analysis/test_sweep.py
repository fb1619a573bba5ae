"""Capacity sweep: points train and evaluate, failures are recorded, finished points are reused."""

from __future__ import annotations

import json

import pytest
import yaml

from advscale.cli import main
from advscale.errors import UserError
from advscale.sweep import load_sweep, plan

BASE = {
    "model": {"arch": "small_cnn"},
    "data": {"n_train": 256, "n_val": 64},
    "epochs": 1,
    "batch_size": 64,
    "optimizer": {"name": "adamw", "lr": 0.003},
    "tensorboard": False,
    "progress": False,
    "device": "cpu",
    "eval": {"attacks": ["fgsm", "pgd"], "n": 32, "attack_kwargs": {"pgd": {"steps": 2}}},
}


def _write(tmp_path, data_dir=None, **changes):
    base = {**BASE, "data": {**BASE["data"], "data_dir": str(data_dir) if data_dir else None}}
    sweep = {
        "base": base,
        "field": "model.kwargs.width",
        "values": [0.25],
        "variants": {"baseline": {"recipe.name": "clean"}, "broken": {"model.arch": "no_such_net"}},
        "eval": {"attacks": ["step_ll", "iter_ll"], "eps": [8], "n": 64},
        "out": str(tmp_path / "sweep"),
        **changes,
    }
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(sweep))
    return path


def test_sweep_records_a_failed_point_and_reuses_finished_ones(fmnist_dir, tmp_path, capsys):
    path = _write(tmp_path, fmnist_dir)
    assert main(["sweep", "--config", str(path)]) == 1  # one point failed
    out = tmp_path / "sweep"
    first = json.loads((out / "results.json").read_text())
    assert first["kind"] == "sweep" and first["complete"] is False
    done = [r for r in first["records"] if r["status"] == "done"]
    assert {(r["variant"], r["value"], r["attack"], r["attack_type"]) for r in done} >= {
        ("baseline", 0.25, "step_ll", "one-step"),
        ("baseline", 0.25, "iter_ll", "iterative"),
    }
    for r in done:
        assert r["ratio"] == pytest.approx(r["accuracy"] / r["clean_accuracy"])
    (failed,) = [r for r in first["records"] if r["status"] == "failed"]
    assert failed["variant"] == "broken" and "no_such_net" in failed["error"]
    assert "1 point(s) failed" in capsys.readouterr().err
    report = (out / "report.md").read_text()
    assert "Failed: variant broken" in report and (out / "report_capacity_sweep.png").exists()
    point = out / "baseline" / "width_0.25" / "results.json"
    stamp = point.stat().st_mtime_ns

    # Rerun: the finished point is not trained again, the failed one is retried.
    assert main(["sweep", "--config", str(path)]) == 1
    err = capsys.readouterr().err
    assert "baseline, model.kwargs.width=0.25: finished earlier, reused" in err
    assert "broken, model.kwargs.width=0.25: FAILED" in err
    assert point.stat().st_mtime_ns == stamp
    second = json.loads((out / "results.json").read_text())
    assert [r for r in second["records"] if r["status"] == "done"] == done

    # Another evaluation of the same trained points: attacked again, not retrained.
    path = _write(
        tmp_path, fmnist_dir, eval={"attacks": ["step_ll", "iter_ll"], "eps": [4, 16], "n": 64}
    )
    assert main(["sweep", "--config", str(path)]) == 1
    assert point.stat().st_mtime_ns == stamp
    third = json.loads((out / "results.json").read_text())
    assert {r["eps"] for r in third["records"] if r["status"] == "done"} == {4.0, 16.0}


def test_sweep_over_a_field_that_does_not_exist_names_it(tmp_path):
    with pytest.raises(
        UserError, match=r"model 'small_cnn' has no argument 'widht'; allowed: width"
    ):
        plan(load_sweep(_write(tmp_path, field="model.kwargs.widht")))
    with pytest.raises(UserError, match=r"no key 'epz' in recipe; allowed: .*eps"):
        plan(load_sweep(_write(tmp_path, field="recipe.epz")))
    with pytest.raises(UserError, match=r"invalid sweep file: valuez"):
        load_sweep(_write(tmp_path, valuez=[1]))
    with pytest.raises(UserError, match=r"sweep eval: unknown key\(s\) epz; allowed: attacks, eps"):
        plan(load_sweep(_write(tmp_path, eval={"epz": [8]})))
