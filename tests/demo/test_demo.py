"""The main job end to end, at a tiny size: three models trained, attacked, reported."""

import json

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
        # the worst case over attacks is never above any single attack
        for e in EPS:
            worst = [
                r
                for r in saved.records
                if r.get("model") == name and r.get("attack") == "worst_case" and r["eps"] == e
            ]
            singles = [
                r["accuracy"]
                for r in saved.records
                if r.get("model") == name and r.get("attack") in ATTACKS and r["eps"] == e
            ]
            assert worst and worst[0]["accuracy"] <= min(singles) + 1e-9

    md = (out / "report.md").read_text()
    assert "baseline" in md and "kurakin_step_ll" in md and ".png" in md
    html = (out / "report.html").read_text()
    assert "data:image/png;base64," in html
    assert json.loads((out / "results.json").read_text())["config"]["eps_unit"] == "1/255"
