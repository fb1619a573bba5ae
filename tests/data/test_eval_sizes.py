"""``advscale eval --image-size/--eval-resize``: ImageNet-style evaluation of a folder of mixed
image sizes (short side resized, centre crop), and the flags' mistakes in one line."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from advscale.cli import main
from advscale.models import build_classifier, save_model


@pytest.fixture
def setup(tmp_path):
    rng = np.random.default_rng(0)
    for c in ("a", "b"):
        (tmp_path / "f" / "val" / c).mkdir(parents=True)
        (tmp_path / "f" / "train" / c).mkdir(parents=True)
        for i, (h, w) in enumerate([(40, 60), (50, 30), (36, 36)]):
            arr = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
            Image.fromarray(arr).save(tmp_path / "f" / "val" / c / f"{i}.png")
            Image.fromarray(arr).save(tmp_path / "f" / "train" / c / f"{i}.png")
    model = build_classifier("small_cnn", {"num_classes": 2, "in_channels": 3, "width": 0.25},
                             (0.5,) * 3, (0.25,) * 3)  # fmt: skip
    save_model(model, tmp_path / "m", classes=["a", "b"])
    return tmp_path


def _eval(setup, *flags):
    out = setup / "r.json"
    args = ["eval", "--model", str(setup / "m"), "--data", "imagefolder", "--data-dir",
            str(setup / "f"), "--split", "val", "--n", "6", "--attacks", "fgsm,pgd", "--eps", "8",
            "--no-unbounded-check", "--device", "cpu", "--out", str(out), "--force", *flags]  # fmt: skip
    return main(args), out


def test_mixed_sizes_are_evaluated_with_resize_and_centre_crop(setup):
    code, out = _eval(setup, "--image-size", "24", "--eval-resize", "28")
    assert code == 0
    r = json.loads(out.read_text())
    assert r["config"]["image_size"] == 24 and r["config"]["eval_resize"] == 28
    assert r["summary"]["n"] == 6


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (["--eval-resize", "256"], "--eval-resize needs --image-size"),
        (["--image-size", "224", "--eval-resize", "200"], "--eval-resize 200 is smaller than"),
        (["--image-size", "100000"], "--image-size must be between 4 and 4096 pixels"),
    ],
)
def test_bad_size_flags_end_in_one_line(setup, capsys, flags, named):
    code, _ = _eval(setup, *flags)
    err = capsys.readouterr().err.strip()
    assert code != 0 and named in err and len(err.splitlines()) == 1
