"""advscale export: the exported file runs without advscale and gives the model's logits."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys

import pytest
import torch

from advscale.cli import main
from advscale.models import save_model
from advscale.models.export import export_model

# Loads an exported file with advscale made unimportable, runs it on saved images, saves logits.
LOADER = """
import sys, torch
sys.modules["advscale"] = None  # the exported model must not need advscale
path, images, out = sys.argv[1:]
x = torch.load(images)
if path.endswith(".pt2"):
    model = torch.export.load(path).module()
else:
    model = torch.jit.load(path)
torch.save(model(x), out)
"""


@pytest.fixture(scope="module")
def trained(fmnist, tiny_trainer):
    return tiny_trainer(fmnist("train", n=1000, seed=0))


@pytest.mark.parametrize("suffix", [".pt2", ".ts"])
def test_exported_model_runs_without_advscale_with_the_same_logits(
    trained, fmnist, fmnist_dir, tmp_path, suffix, capsys
):
    ckpt = tmp_path / "tiny"
    save_model(trained, ckpt, dataset="fashion-mnist")
    out = tmp_path / f"model{suffix}"
    assert main(["export", str(ckpt), "--to", str(out), "--data-dir", str(fmnist_dir)]) == 0
    printed = capsys.readouterr().out
    assert f"wrote {out}" in printed and "logits match on 8 fashion-mnist test images" in printed

    # Another batch size than the 8 images the export was checked on.
    x, _ = fmnist("test", n=30, seed=5).tensors()
    torch.save(x, tmp_path / "x.pt")
    (tmp_path / "load.py").write_text(LOADER)
    done = subprocess.run(
        [sys.executable, str(tmp_path / "load.py"), str(out), str(tmp_path / "x.pt"),
         str(tmp_path / "logits.pt")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    got = torch.load(tmp_path / "logits.pt")
    with torch.no_grad():
        assert torch.allclose(got, trained(x), atol=1e-5)
    assert trained.training is False

    # The output is never overwritten by accident.
    assert main(["export", str(ckpt), "--to", str(out), "--data-dir", str(fmnist_dir)]) == 2
    assert "--force" in capsys.readouterr().err


def test_export_refuses_unknown_suffix_and_says_how_to_get_onnx(trained, tmp_path, capsys):
    ckpt = tmp_path / "tiny"
    save_model(trained, ckpt)  # no dataset recorded: --input-shape gives the example
    assert main(["export", str(ckpt), "--to", str(tmp_path / "m.pkl")]) == 2
    assert ".pt2 (torch.export), .ts (TorchScript) or .onnx" in capsys.readouterr().err
    assert main(["export", str(ckpt), "--to", str(tmp_path / "m.ts")]) == 2
    assert "--input-shape" in capsys.readouterr().err
    onnx = tmp_path / "m.onnx"
    rc = main(["export", str(ckpt), "--to", str(onnx), "--input-shape", "1,28,28"])
    if importlib.util.find_spec("onnx") is None:
        assert rc == 2 and not onnx.exists()
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "pip install onnx" in err
    else:
        assert rc == 0 and onnx.is_file()
        checked = importlib.util.find_spec("onnxruntime") is not None
        assert ("logits match" in capsys.readouterr().out) == checked
        # Self-contained: no hidden weights file named after a temporary path, and the file
        # copied alone loads with its weights.
        assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]
        import onnx as onnx_lib

        alone = tmp_path / "alone"
        alone.mkdir()
        shutil.copy(onnx, alone / "copy.onnx")
        assert onnx_lib.load(str(alone / "copy.onnx")).graph.initializer


def test_an_export_with_other_logits_is_not_written(trained, fmnist, tmp_path):
    class Sampled(torch.nn.Module):
        """Different logits on every call: no exported copy can agree with it."""

        def __init__(self) -> None:
            super().__init__()
            self.model = trained

        def forward(self, x):
            return self.model(x) + torch.rand(x.shape[0], 10)

    x, _ = fmnist("test", n=8, seed=5).tensors()
    with pytest.raises(ValueError, match="other logits than the model"):
        export_model(Sampled(), tmp_path / "m.ts", x)
    assert not list(tmp_path.iterdir())


def test_a_torchscript_model_exports_as_torchscript_and_torch_export_is_refused(
    trained, fmnist, tmp_path, capsys
):
    scripted = tmp_path / "model.ts"
    x, _ = fmnist("test", n=8, seed=5).tensors()
    torch.jit.trace(trained.eval(), x).save(str(scripted))
    out = tmp_path / "again.ts"
    args = ["export", str(scripted), "--input-shape", "1,28,28", "--to"]
    assert main([*args, str(out)]) == 0, capsys.readouterr().err
    with torch.no_grad():
        assert torch.allclose(torch.jit.load(str(out))(x), trained(x), atol=1e-5)
    assert main([*args, str(tmp_path / "m.pt2")]) == 2
    err = capsys.readouterr().err
    assert "m.pt2: torch.export cannot take a TorchScript model" in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "m.pt2").exists()
