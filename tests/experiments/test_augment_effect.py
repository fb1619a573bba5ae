"""experiments/augmentation/run.py at a tiny size: four real runs, their table and that the
augmented runs were trained with augmentation."""

import importlib.util
import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

SCRIPT = Path(__file__).resolve().parents[2] / "experiments" / "augmentation" / "run.py"


@pytest.fixture(scope="module")
def driver():
    spec = importlib.util.spec_from_file_location("augment_effect_run", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def tiny_run(driver, fmnist_dir, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("augment")
    out, work = tmp / "augment_effect", tmp / "runs"
    assert driver.main(["--tiny", "--out", str(out), "--work", str(work)]) == 0
    return json.loads(out.with_suffix(".json").read_text()), out.with_suffix(".md"), work


@pytest.mark.slow
def test_results_hold_one_row_per_recipe_and_augment(tiny_run):
    result, md, _ = tiny_run
    rows = {(r["recipe"], r["augment"]): r for r in result["runs"]}
    assert set(rows) == {(a, b) for a in ("rs_fgsm", "pgd") for b in ("none", "crop_flip")}
    for r in rows.values():
        assert 0 <= r["pgd20_accuracy"] <= 1 and 0 <= r["clean_accuracy"] <= 1
        assert r["train_s"] > 0 and r["steps"] == 2  # 64 images, batch 32, 1 epoch
        assert r["eval_eps"] == r["eps"] == 8  # PGD-20 at the recipe's training ε
    for key in ("torch", "advscale", "cpu", "python"):
        assert result["environment"][key]
    s = result["settings"]
    assert s["overrides"]["eval.n"] == s["eval_n"] == 32
    assert s["overrides"]["eval.attack_kwargs"] == "{pgd: {steps: 20, restarts: 1}}"
    # The effect is crop_flip minus none, in points; the noise band is from the binomial.
    for recipe, e in result["effect"].items():
        a, b = rows[(recipe, "crop_flip")], rows[(recipe, "none")]
        diff = 100 * (a["pgd20_accuracy"] - b["pgd20_accuracy"])
        assert e["pgd20_accuracy_delta"] == pytest.approx(diff)
    text = md.read_text()
    assert "| recipe | augment | clean % | PGD-20 % | training s |" in text
    assert text.count("| RS-FGSM |") == 2 and text.count("| PGD-7 |") == 2
    assert result["conclusion"] in text and "shared machine" in text


@pytest.mark.slow
def test_augmented_runs_trained_with_augmentation(tiny_run):
    _, _, work = tiny_run
    for recipe in ("rs_fgsm", "pgd"):
        configs = {
            a: json.loads((work / f"{recipe}_{a}" / "config.json").read_text())
            for a in ("none", "crop_flip")
        }
        assert configs["none"]["data"]["augment"] == "none"
        assert configs["crop_flip"]["data"]["augment"] == "crop_flip"
        # Apart from the augmentation, the two runs are configured alike...
        configs["crop_flip"]["data"]["augment"] = "none"
        assert configs["crop_flip"] == configs["none"]
        # ...and the augmented one saw other images, so it ends with other weights.
        w = {a: load_file(work / f"{recipe}_{a}" / "model.safetensors") for a in configs}
        assert w["none"].keys() == w["crop_flip"].keys()
        assert any(not torch.equal(w["none"][k], w["crop_flip"][k]) for k in w["none"])


def test_noise_band_is_twice_the_standard_error_of_the_difference(driver):
    # p = 0.5 on 100 images: standard error 5 points each, of the difference 5√2.
    runs = [
        {"recipe": r, "augment": a, "clean_accuracy": 0.5, "pgd20_accuracy": p}
        for r in ("rs_fgsm", "pgd")
        for a, p in (("none", 0.5), ("crop_flip", 0.5))
    ]
    e = driver.effect(runs, 100)["pgd"]
    assert e["pgd20_accuracy_delta"] == 0
    assert e["pgd20_accuracy_2se"] == pytest.approx(2 * 5 * math.sqrt(2))
