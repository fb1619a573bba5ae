"""A freshly trained run exports as the README prints it: no --data, the dataset is recorded."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from advscale.cli import main
from advscale.data import load_dataset
from advscale.models import load_model

ROOT = Path(__file__).resolve().parents[2]


def test_train_then_export_needs_no_data_flag(tmp_path, tiny_settings, capsys):
    run = tmp_path / "kurakin"
    sets = tiny_settings(
        **{"data.n_train": 256, "eval.n": 50, "eval.attacks": "[pgd]", "eval.eps": "[8]"}
    )
    config = str(ROOT / "configs" / "kurakin_step_ll.yaml")
    sets = [a for s in sets for a in ("--set", s)]
    assert main(["train", "--config", config, "--out", str(run), *sets]) == 0
    sidecar = json.loads((run / "model.json").read_text())
    assert sidecar["dataset"] == "fashion-mnist"
    assert sidecar["input_shape"] == [1, 28, 28]
    best = json.loads((run / "checkpoints" / "last" / "model.json").read_text())
    assert best["dataset"] == "fashion-mnist"

    out = tmp_path / "model.pt2"
    assert main(["export", str(run / "model"), "--to", str(out)]) == 0
    assert "fashion-mnist test images" in capsys.readouterr().out
    x, _ = load_dataset("fashion-mnist", "test").take(16, seed=3).tensors()
    exported = torch.export.load(out).module()
    with torch.no_grad():
        expected = load_model(run / "model")(x)
        assert torch.allclose(exported(x), expected, atol=1e-4)
