"""benchmarks/data_scale.py at a tiny size: every measurement runs and lands in its files."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture(scope="module")
def data_scale():
    sys.path.insert(0, str(BENCH))
    try:
        import data_scale

        yield data_scale
    finally:
        sys.path.remove(str(BENCH))


def test_generated_folder_is_an_imagefolder_of_96px_jpegs(data_scale, tmp_path):
    from advscale.data import load_dataset

    root = data_scale.make_folder(tmp_path / "f", 30, workers=1)
    train, val = (load_dataset("imagefolder", s, root) for s in ("train", "val"))
    assert (len(train), len(val), train.num_classes) == (30, 10, 10)
    assert train.image_size == (96, 96) and train.channels == 3
    assert sorted(p.suffix for p in (root / "train" / "c03").iterdir()) == [".jpg"] * 3


@pytest.mark.slow
def test_tiny_run_measures_everything(data_scale, tmp_path):
    out = tmp_path / "res"
    args = [
        "--tiny",
        "--sizes",
        "30",
        "--device",
        "cpu",
        "--out",
        str(out),
        "--work",
        str(tmp_path),
    ]
    assert data_scale.main(args) == 0
    r = json.loads(out.with_suffix(".json").read_text())
    one = r["sizes"]["30"]
    for part in ("index_build", "train", "eval"):
        assert one[part]["peak_rss_mb"] > 50 and one[part]["peak_tree_rss_mb"] > 0
    assert 0 < one["train"]["first_step_s"] < one["train"]["seconds"]
    tp = r["throughput"]["images_per_s"]
    assert set(tp) == {"advscale_1", "advscale_2", "dataloader_pil_1", "dataloader_pil_2"}
    # One round: its ratio is the median, taken from that round's two rates.
    two = r["throughput"]["two_vs_one_worker"]
    assert two["median"] == two["rounds"][0]
    assert two["median"] == pytest.approx(tp["advscale_2"] / tp["advscale_1"], rel=2e-3)
    assert r["throughput"]["machine"]["two_vs_one_process"] > 0
    assert all(r["decoders"][k]["same_pixels"] for k in ("96x96", "500x375"))
    assert all(v > 0 for v in tp.values()) and r["on_device"]["ratio"] > 0
    assert set(r["verdicts"]["met"]) == {
        "memory_flat_15pct", "first_step_within_2x", "throughput_vs_dataloader_pil",
        "two_workers_1_7x", "on_device_augmentation_95pct",
    }  # fmt: skip
    md = out.with_suffix(".md").read_text()
    assert "tiny run: the numbers mean nothing" in md and "| 30 |" in md
    assert r["env"]["torch"] and r["pillow"]
    # The generated folders and runs were removed with their temporary folder.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["res.json", "res.md"]
