"""The main job end to end, at a tiny size: three models trained, attacked, reported."""

import json

import pytest

from advscale.demo import ATTACKS, EPS, LEAK_EPS, MODELS, run_demo
from advscale.models import load_model
from advscale.results import load_results

TINY = {
    "n_train": 600,
    "epochs": 1,
    "n_test": 60,
    "apgd_steps": 2,
    "batch_size": 100,
    "width": 0.25,
}


def test_demo_writes_models_results_and_reports(tmp_path, fmnist_dir):
    out = tmp_path / "demo"
    results = run_demo(out, data_dir=fmnist_dir, size=TINY, device="cpu", progress=False)

    saved = load_results(out / "results.json")
    assert saved.kind == "demo" and saved.complete
    for name in MODELS:
        model = load_model(out / "models" / name)
        assert model.meta["dataset"] == "fashion-mnist"
        got = {
            (r["attack"], r["eps"])
            for r in saved.records
            if r.get("model") == name and "attack" in r
        }
        assert {(a, e) for a in ATTACKS for e in EPS} <= got
        leaks = [
            r for r in saved.records if r.get("model") == name and r.get("check") == "label_leak"
        ]
        assert sorted(r["eps"] for r in leaks) == LEAK_EPS
        assert isinstance(results.summary[name]["label_leak"], bool)
        # The summary's worst case is the worst_case record of the evaluation (that it is below
        # every single attack is tested in tests/evaluate/test_robust.py).
        worst = [
            r
            for r in saved.records
            if r.get("model") == name and r.get("attack") == "worst_case" and r["eps"] == 8.0
        ]
        assert len(worst) == 1
        assert saved.summary[name]["worst_case"]["8"] == worst[0]["accuracy"]
        # Each model's training run is kept, and its evaluation points back at it.
        train_dir = out / "train" / name
        trained = json.loads((train_dir / "summary.json").read_text())
        assert trained["recipe"] == MODELS[name]["name"] and trained["steps"] >= 1
        # its end-of-training check ran on min(n_test, 100) images
        checked = load_results(train_dir).records
        assert {r["n"] for r in checked if r.get("type") == "eval"} == {TINY["n_test"]}
        ev = load_results(out / "eval" / f"{name}.json")
        assert ev.config["train_run"] == str(train_dir)

    md = (out / "report.md").read_text()
    assert ".png" in md
    robust = md.split("## Robust accuracy")[1].split("\n## ")[0]
    for name in MODELS:
        # Every model has its table, from the demo's evaluation; its end-of-training check is
        # left out with a note saying so.
        assert f"*{name}: accuracy under attack*" in robust
        assert f"*{name} (training): accuracy under attack*" not in robust
        assert f"{name} (training): its end-of-training robustness check" in robust
    html = (out / "report.html").read_text()
    assert "data:image/png;base64," in html
    assert json.loads((out / "results.json").read_text())["config"]["eps_unit"] == "1/255"


def test_end_of_training_check_is_small_at_full_size():
    """The report shows the demo's own evaluation (1000 images, every attack) in place of each
    training run's check, so the check is kept cheap."""
    from advscale.demo import FULL, demo_config

    cfg = demo_config(MODELS["kurakin_step_ll"], FULL, None, "cpu")
    assert cfg.eval.n == 100 and cfg.eval.attacks == ["fgsm", "pgd"] and cfg.eval.eps == [8.0]
    assert cfg.eval.attack_kwargs["pgd"]["steps"] == 5
    assert cfg.data.n_val == 500 and FULL["n_test"] == 1000


@pytest.mark.slow
def test_demo_keeps_an_earlier_run_and_resumes_an_interrupted_one(
    tmp_path, fmnist_dir, monkeypatch
):
    import os
    import signal

    from advscale import demo
    from advscale.errors import RunInterrupted, UserError

    monkeypatch.setattr(demo, "MODELS", {"baseline": MODELS["baseline"]})  # one model is enough
    size = {**TINY, "epochs": 2, "n_train": 200, "n_test": 20}  # 2 steps per epoch
    out = tmp_path / "demo"
    train = demo.train

    def ctrl_c_after_the_first_epoch(cfg, run_dir, **kw):
        def on_epoch(rec: dict) -> None:
            if rec["epoch"] == 0:
                os.kill(os.getpid(), signal.SIGINT)  # acted on at the epoch boundary

        return train(cfg, run_dir, on_epoch=on_epoch, **kw)

    monkeypatch.setattr(demo, "train", ctrl_c_after_the_first_epoch)
    with pytest.raises(RunInterrupted) as caught:
        run_demo(out, data_dir=fmnist_dir, size=size, device="cpu", progress=False)
    # The hint names a command that works: the demo's own, not `advscale train`'s flag.
    assert str(caught.value).startswith("SIGINT: stopped after step 2,")
    assert str(caught.value).endswith(f"; continue with: advscale demo --out {out} --resume")
    monkeypatch.setattr(demo, "train", train)

    with pytest.raises(UserError, match=r"already holds a demo \(train\); use --resume"):
        run_demo(out, data_dir=fmnist_dir, size=size, device="cpu", progress=False)
    with pytest.raises(UserError, match="exclude each other"):
        run_demo(out, force=True, resume=True)
    results = run_demo(
        out, data_dir=fmnist_dir, size=size, device="cpu", progress=False, resume=True
    )
    assert results.complete and load_results(out).complete
    trained = json.loads((out / "train" / "baseline" / "summary.json").read_text())
    assert trained["steps"] == 4  # the first epoch was not trained twice
    steps = [
        json.loads(line)["step"]
        for line in (out / "train" / "baseline" / "metrics.jsonl").read_text().splitlines()
        if json.loads(line)["type"] == "epoch"
    ]
    assert steps == [2, 4]
