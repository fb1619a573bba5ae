"""Capacity sweep: points train and evaluate, failures are recorded, finished points are reused."""

from __future__ import annotations

import json
import os

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


@pytest.fixture
def evaluations(monkeypatch):
    """The ε of every sweep evaluation (``advscale.evaluate.evaluate`` with the sweep's attacks,
    not the training runs' own fgsm/pgd check), each report given a gradient-masking warning
    (as a model that masks gradients would get)."""
    import advscale.evaluate

    calls = []
    real = advscale.evaluate.evaluate

    def counted(*args, **kwargs):
        report = real(*args, **kwargs)
        if kwargs["attacks"] == ["step_ll", "iter_ll"]:
            calls.append(kwargs["eps"])
            report.warnings.append({"check": "fake_check", "message": "loss does not rise"})
        return report

    monkeypatch.setattr(advscale.evaluate, "evaluate", counted)
    return calls


def test_sweep_records_a_failed_point_and_reuses_finished_ones(
    fmnist_dir, tmp_path, capsys, evaluations
):
    path = _write(tmp_path, fmnist_dir)
    assert main(["sweep", "--config", str(path)]) == 1  # one point failed
    assert evaluations == [[8.0]]  # the broken point fails before its evaluation
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
    err = capsys.readouterr().err
    assert "1 point(s) failed" in err
    # Gradient-masking warnings are printed as advscale eval prints them, naming the point.
    assert "warning [fake_check]: baseline, model.kwargs.width=0.25: loss does not rise" in err
    assert first["summary"]["warnings"] == [
        {
            "check": "fake_check",
            "message": "baseline, model.kwargs.width=0.25: loss does not rise",
        }
    ]
    report = (out / "report.md").read_text()
    assert "Failed: variant broken" in report and (out / "report_capacity_sweep.png").exists()
    point = out / "baseline" / "width_0.25" / "results.json"
    stamp = point.stat().st_mtime_ns
    evaluated = out / "baseline" / "width_0.25" / "sweep_eval.json"
    eval_stamp, eval_bytes = evaluated.stat().st_mtime_ns, evaluated.read_bytes()

    # Rerun: the finished point is not trained again, the failed one is retried.
    assert main(["sweep", "--config", str(path)]) == 1
    err = capsys.readouterr().err
    assert "baseline, model.kwargs.width=0.25: finished earlier, reused" in err
    assert "broken, model.kwargs.width=0.25: FAILED" in err
    assert point.stat().st_mtime_ns == stamp
    # ... nor attacked again: its evaluation is reused as it was.
    assert evaluations == [[8.0]]
    assert evaluated.stat().st_mtime_ns == eval_stamp and evaluated.read_bytes() == eval_bytes
    second = json.loads((out / "results.json").read_text())
    assert [r for r in second["records"] if r["status"] == "done"] == done

    # Another evaluation of the same trained points: attacked again, not retrained.
    path = _write(
        tmp_path, fmnist_dir, eval={"attacks": ["step_ll", "iter_ll"], "eps": [4, 16], "n": 64}
    )
    assert main(["sweep", "--config", str(path)]) == 1
    assert point.stat().st_mtime_ns == stamp
    assert evaluations == [[8.0], [4.0, 16.0]]
    assert evaluated.stat().st_mtime_ns != eval_stamp and evaluated.read_bytes() != eval_bytes
    assert json.loads(evaluated.read_text())["config"]["sweep_eval"]["eps"] == [4.0, 16.0]
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
    with pytest.raises(
        UserError,
        match=r"sweep.yaml: invalid sweep file: eval.epz: unknown key; allowed: attacks, eps",
    ):
        load_sweep(_write(tmp_path, eval={"epz": [8]}))


@pytest.mark.parametrize(
    ("eval_section", "message"),
    [
        ({"n": 0}, r"eval\.n: Input should be greater than or equal to 1 \(got 0\)"),
        ({"batch_size": 0}, r"eval\.batch_size: Input should be greater than or equal to 1"),
        ({"eps": "eight"}, r"eval\.eps: Input should be a valid list \(got 'eight'\)"),
        ({"eps": [0.03]}, r"eval\.eps: eps \[0\.03\] look like \[0, 1\] units"),
        ({"attacks": ["pgdd"]}, r"eval\.attacks: unknown attack\(s\) 'pgdd'; allowed: .*pgd,"),
        ({"attack_kwargs": {"pgdd": {}}}, r"eval\.attack_kwargs: .*unknown attack\(s\) 'pgdd'"),
        ({"seed": "x"}, r"eval\.seed: Input should be a valid integer"),
    ],
)
def test_bad_eval_values_are_refused_before_any_point_trains(
    tmp_path, capsys, eval_section, message
):
    path = _write(tmp_path, eval=eval_section)
    with pytest.raises(UserError, match=rf"{path}: invalid sweep file: {message}"):
        load_sweep(path)
    assert main(["sweep", "--config", str(path)]) == 2
    assert "invalid sweep file" in capsys.readouterr().err
    assert not (tmp_path / "sweep").exists()  # nothing trained, nothing written


def test_eval_defaults_and_a_single_eps():
    from advscale.sweep import SweepConfig

    cfg = SweepConfig.model_validate({"field": "epochs", "values": [1]})
    assert cfg.eval.attacks == ["step_ll", "iter_ll"] and cfg.eval.eps is None
    assert (cfg.eval.n, cfg.eval.batch_size, cfg.eval.seed) == (1000, 500, 0)
    one = SweepConfig.model_validate({"field": "epochs", "values": [1], "eval": {"eps": 8}})
    assert one.eval.eps == [8.0]


def test_sweep_evaluates_a_point_trained_on_webdataset_shards(fmnist, tmp_path):
    from advscale.data import write_shards

    write_shards(fmnist("train", n=256), tmp_path / "train", shard_size=128)
    write_shards(fmnist("test", n=64), tmp_path / "val", shard_size=32)
    data = {"name": "webdataset", "data_dir": str(tmp_path / "train"), "n_val": 64}
    path = _write(
        tmp_path,
        base={**BASE, "data": {**data, "val_dir": str(tmp_path / "val")}},
        variants={"baseline": {"recipe.name": "clean"}},
        eval={"attacks": ["step_ll", "iter_ll"], "eps": [8], "n": 48},
    )
    assert main(["sweep", "--config", str(path)]) == 0
    res = json.loads((tmp_path / "sweep" / "results.json").read_text())
    assert res["complete"] and {r["attack"] for r in res["records"]} >= {"step_ll", "iter_ll"}
    ev = json.loads(
        (tmp_path / "sweep" / "baseline" / "width_0.25" / "sweep_eval.json").read_text()
    )
    assert ev["summary"]["n"] == 48
    assert ev["config"]["sweep_eval"]["data"]["name"] == "webdataset"


def test_set_overrides_the_sweep_file_and_every_points_training_config(tmp_path):
    path = _write(tmp_path, set={"epochs": 2}, variants={"baseline": {"recipe.name": "clean"}})
    cfg = load_sweep(
        path,
        overrides=["eval.n=16", "values=[0.5, 1]", "epochs=1", "optimizer.lr=1e-3", "seed=3"],
    )
    assert cfg.eval.n == 16 and cfg.values == [0.5, 1]
    assert cfg.set == {"epochs": 1, "optimizer.lr": 0.001, "seed": 3}
    # Each point's config gets the shared overrides.
    points = plan(cfg)
    assert [value for _, value, _, _ in points] == [0.5, 1]
    assert all(c.epochs == 1 and c.optimizer.lr == 0.001 and c.seed == 3 for _, _, c, _ in points)
    # Checked as train --set checks them, naming the item.
    with pytest.raises(UserError, match=r"--set 'epochs=true'"):
        load_sweep(path, overrides=["epochs=true"])
    with pytest.raises(UserError, match=r"eval.n: Input should be greater than or equal to 1"):
        load_sweep(path, overrides=["eval.n=0"])
    with pytest.raises(UserError, match=r"expected KEY=VALUE"):
        load_sweep(path, overrides=["epochs"])


def test_shards_partition_the_grid_and_report_as_the_whole_sweep(fmnist_dir, tmp_path, capsys):
    from advscale.report.runs import collect_runs
    from advscale.sweep import parse_shard

    variants = {"baseline": {"recipe.name": "clean"}, "fgsm": {"recipe.name": "fgsm"}}
    kw = dict(values=[0.25, 0.5], variants=variants, eval={"attacks": ["pgd"], "eps": [8], "n": 32})
    path = _write(tmp_path, fmnist_dir, **kw)
    assert main(["sweep", "--config", str(path)]) == 0
    whole = json.loads((tmp_path / "sweep/results.json").read_text())

    # Share 1 of 2 as given; share 2 of 2 as a SLURM array job (--array=1-2) runs it.
    sharded = tmp_path / "sharded"
    args = ["sweep", "--config", str(path), "--out", str(sharded)]
    assert main([*args, "--shard", "1/2"]) == 0
    slurm = {"SLURM_ARRAY_TASK_ID": "2", "SLURM_ARRAY_TASK_COUNT": "2", "SLURM_ARRAY_TASK_MIN": "1"}
    assert parse_shard("slurm", slurm) == (2, 2)
    os.environ.update(slurm)
    try:
        assert main([*args, "--shard", "slurm"]) == 0
    finally:
        for k in slurm:
            os.environ.pop(k)
    shares = [json.loads((sharded / f"shard-{i}-of-2/results.json").read_text()) for i in (1, 2)]
    points = [{(r["variant"], r["value"]) for r in s["records"]} for s in shares]
    # Round robin over the plan (variant by variant, value by value): disjoint, all of it.
    assert points == [{("baseline", 0.25), ("fgsm", 0.25)}, {("baseline", 0.5), ("fgsm", 0.5)}]
    assert (sharded / "shard-2-of-2/fgsm/width_0.5/model.safetensors").exists()

    # The report's view of the two shares is the one sweep, record for record.
    def strip(records):
        return [{k: v for k, v in r.items() if k != "run_dir"} for r in records]

    (run,) = collect_runs([sharded / "shard-1-of-2", sharded / "shard-2-of-2"])
    assert run.results.complete and run.results.kind == "sweep"
    assert strip(run.results.records) == strip(whole["records"])
    assert run.results.summary["points"] == 4 and run.results.summary["done"] == 4
    # One share alone: the sweep, incomplete, naming the share that is missing.
    (part,) = collect_runs([sharded / "shard-2-of-2"])
    assert not part.results.complete and part.results.summary["missing_shards"] == ["1/2"]
    out = tmp_path / "report.md"
    assert (
        main(
            [
                "report",
                str(sharded / "shard-1-of-2"),
                str(sharded / "shard-2-of-2"),
                "--out",
                str(out),
            ]
        )
        == 0
    )


@pytest.mark.parametrize(
    "text, env, message",
    [
        ("0/2", {}, "expected I/N with 1 <= I <= N"),
        ("3/2", {}, "expected I/N with 1 <= I <= N"),
        ("1-2", {}, "expected I/N"),
        ("slurm", {}, "SLURM_ARRAY_TASK_ID, SLURM_ARRAY_TASK_COUNT not set"),
        ("slurm", {"SLURM_ARRAY_TASK_ID": "7", "SLURM_ARRAY_TASK_COUNT": "4"}, "task 7"),
    ],
)
def test_a_bad_shard_is_refused_naming_it(text, env, message):
    from advscale.sweep import parse_shard

    with pytest.raises(UserError, match=message):
        parse_shard(text, env)
    # An array numbered from 0 (--array=0-3): task 0 is share 1.
    assert parse_shard("slurm", {"SLURM_ARRAY_TASK_ID": "0", "SLURM_ARRAY_TASK_COUNT": "4"}) == (
        1,
        4,
    )
