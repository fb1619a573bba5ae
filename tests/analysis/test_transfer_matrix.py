"""Transfer matrix: rates as paper A defines them, examples generated once per source, clear errors."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from torch import nn

from advscale.cli import main
from advscale.errors import UserError
from advscale.evaluate import transfer_matrix as tm_module
from advscale.evaluate.transfer_matrix import transfer_matrix
from advscale.models import build_classifier, save_model
from advscale.models.checkpoint import checkpoint_name


class AlwaysClassZero(nn.Module):
    """Predicts class 0 whatever the input: its input gradient is zero, so it cannot be attacked."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = torch.zeros(len(x), 10, device=x.device)
        logits[:, 0] = 1.0
        return logits + 0.0 * x.flatten(1).sum(1, keepdim=True)


def test_transfer_rates_match_an_independent_fgsm_and_examples_are_generated_once(
    tiny_models, fmnist, monkeypatch
):
    torchattacks = pytest.importorskip("torchattacks")
    a, b = tiny_models(0), tiny_models(1)
    models = {"a": a, "a_copy": copy.deepcopy(a), "b": b, "zero": AlwaysClassZero()}
    test = fmnist("test", n=200)
    calls = []
    real_build = tm_module.build_attack

    def counting_build(name, model, *args, **kwargs):
        calls.append((name, model, kwargs.get("early_stop")))
        return real_build(name, model, *args, **kwargs)

    monkeypatch.setattr(tm_module, "build_attack", counting_build)
    res = transfer_matrix(models, test, attacks=["fgsm"], eps=[8])

    # One generation per source (4), with full iterations, reused for the 4 targets.
    assert len(calls) == 4 and all(early is False for _, _, early in calls)
    # Each source with batch norm is attacked through its folded copy: the same function. The
    # constant model has nothing to fold (nor convolutions to lay out): it is used as it is.
    x, y = test.tensors()
    with torch.no_grad():
        for (_, used, _), (name, source) in zip(calls, models.items(), strict=True):
            assert (used is source) == (name == "zero")
            assert torch.allclose(used(x), source(x), atol=1e-4)
    assert res.config["fused"] == {"a": True, "a_copy": True, "b": True, "zero": False}
    assert res.config["folded_batchnorm"] == {"a": 5, "a_copy": 5, "b": 5, "zero": 0}
    assert res.kind == "transfer_matrix" and res.complete and len(res.records) == 16

    def rec(s, t):
        (r,) = res.select(source=s, target=t, attack="fgsm", eps=8.0)
        return r

    # Oracle: torchattacks' FGSM on the same examples.
    x_adv = torchattacks.FGSM(a, eps=8 / 255)(x, y)
    with torch.no_grad():
        cand = (a(x).argmax(1) == y) & (a(x_adv).argmax(1) != y)
        b_wrong = b(x_adv).argmax(1) != y
    assert cand.sum() > 20  # the tiny model is accurate enough for the rates to mean something
    assert abs(rec("a", "b")["candidates"] - int(cand.sum())) <= 1
    expected = float((cand & b_wrong).sum()) / float(cand.sum())
    assert rec("a", "b")["transfer_rate"] == pytest.approx(expected, abs=0.02)
    assert rec("a", "b")["error_rate"] == pytest.approx(float(b_wrong.float().mean()), abs=0.01)
    # A copy of the source is fooled by exactly the same examples.
    assert rec("a", "a_copy")["transfer_rate"] == 1.0 == rec("a", "a")["transfer_rate"]
    assert rec("a", "a_copy")["error_rate"] == rec("a", "a")["error_rate"]
    # The constant model is wrong exactly on the candidates whose label is not 0.
    r = rec("a", "zero")
    n_cand = r["candidates"]
    assert r["transfer_rate"] == pytest.approx(
        float((cand & (y != 0)).sum()) / n_cand, abs=1.5 / n_cand
    )
    assert r["error_rate"] == pytest.approx(float((y != 0).float().mean()))
    # A model with zero gradients yields no adversarial examples: no rate rather than a fake 0.
    assert rec("zero", "a")["candidates"] == 0 and rec("zero", "a")["transfer_rate"] is None
    assert res.summary["mean_transfer_rate"]["fgsm"]["8"] is not None


def test_models_with_different_numbers_of_classes_are_refused(tiny_models, fmnist):
    five = build_classifier(
        "small_cnn", {"num_classes": 5, "in_channels": 1, "width": 0.25}, (0.5,), (0.5,)
    )
    with pytest.raises(UserError, match=r"different numbers of classes \(ten: 10, five: 5\)"):
        transfer_matrix({"ten": tiny_models(0), "five": five}, fmnist("test", n=20), ["fgsm"], [8])


def test_transfer_matrix_command_writes_results_heatmaps_and_a_report(
    tiny_models, fmnist_dir, tmp_path, capsys
):
    for seed in (0, 1):
        save_model(tiny_models(seed), tmp_path / "models" / f"m{seed}")
    out = tmp_path / "tm"
    argv = [
        "transfer-matrix",
        "--models",
        f"{tmp_path}/models/m0,{tmp_path}/models/m1",
        "--attacks",
        "fgsm,iter_ll",
        "--eps",
        "4,16",
        "--n",
        "60",
        "--data-dir",
        str(fmnist_dir),
        "--device",
        "cpu",
        "--out",
        str(out),
    ]
    assert main(argv) == 0
    saved = json.loads((out / "results.json").read_text())
    assert (
        saved["complete"]
        and saved["config"]["models"] == ["m0", "m1"]
        and len(saved["records"]) == 16
    )
    assert {p.name for p in out.glob("*.png")} == {
        "transfer_fgsm_eps4.png",
        "transfer_fgsm_eps16.png",
        "transfer_iter_ll_eps4.png",
        "transfer_iter_ll_eps16.png",
    }
    assert saved["config"]["fused"] == {"m0": True, "m1": True}
    assert "fgsm ε=16/255: transfer rate %" in capsys.readouterr().out
    assert main(["report", str(out), "--out", str(tmp_path / "r.html")]) == 0
    assert "Transferability: tm" in (tmp_path / "r.md").read_text()

    # --no-fuse attacks the models as loaded.
    plain = tmp_path / "plain"
    small = ["--attacks", "fgsm", "--eps", "8", "--n", "20", "--out", str(plain), "--no-fuse"]
    assert main([*argv, *small]) == 0  # (later flags win)
    saved = json.loads((plain / "results.json").read_text())
    assert saved["config"]["fused"] == {"m0": False, "m1": False}
    assert saved["config"]["folded_batchnorm"] == {"m0": 0, "m1": 0}
    assert len(saved["records"]) == 4


def test_checkpoint_short_names_of_transfer_matrix():
    specs = ["runs/a/baseline/model", "runs/a/kurakin/model.safetensors", "zoo/resnet18.pt"]
    assert tm_module._model_names(specs) == ["baseline", "kurakin", "resnet18"]
    assert [checkpoint_name(s) for s in specs] == ["baseline", "kurakin", "resnet18"]
    # Parent directories are added only as far as needed to tell the checkpoints apart; a
    # directory that names no model ("checkpoints") does not replace the file name.
    assert tm_module._model_names(["runs/a/model", "runs/b/model"]) == ["a", "b"]
    assert tm_module._model_names(["x/checkpoints/best", "x/model", "y/checkpoints/best"]) == [
        "x/checkpoints/best",
        "x",
        "y/checkpoints/best",
    ]
