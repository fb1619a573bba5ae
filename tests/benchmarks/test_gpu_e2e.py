"""benchmarks/gpu_e2e.py at a tiny size on the CPU: the GPU run's code path stays working."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture(scope="module")
def gpu_e2e():
    sys.path.insert(0, str(BENCH))
    try:
        import gpu_e2e

        yield gpu_e2e
    finally:
        sys.path.remove(str(BENCH))


def test_stand_in_data_is_read_as_cifar10(gpu_e2e, tmp_path):
    from advscale.data import load_cifar10, load_dataset

    d = gpu_e2e.write_cifar_layout(tmp_path, 50, 20)
    train, test = load_cifar10("train", d), load_cifar10("test", d)
    assert (len(train), len(test)) == (50, 20)
    assert tuple(train.images.shape[1:]) == (3, 32, 32)
    src = load_dataset("fashion-mnist", "test").take(20, seed=0)
    assert train.classes == src.classes
    assert np.array_equal(test.labels.numpy(), src.labels.numpy())
    # padded by 2 zero pixels, grey repeated in the three planes
    assert np.array_equal(test.images[:, 1, 2:30, 2:30].numpy(), src.images[:, 0].numpy())
    assert int(test.images[:, :, :2].max()) == 0 and bool(
        (test.images[:, 0] == test.images[:, 2]).all()
    )


def test_tiny_run_times_every_phase_of_the_real_training_run(gpu_e2e, tmp_path):
    out = tmp_path / "res"
    assert (
        gpu_e2e.main(["--tiny", "--device", "cpu", "--out", str(out), "--work", str(tmp_path)]) == 0
    )
    r = json.loads(out.with_suffix(".json").read_text())
    phases = r["phases_s"]
    parts = sum(
        v for k, v in phases.items() if k not in ("end to end",) and not k.startswith("write")
    )
    assert all(v >= 0 for v in phases.values())
    assert phases["training steps"] > 0 and phases["guard checks"] > 0
    assert phases["final evaluation and model"] > 0
    assert parts == pytest.approx(phases["end to end"], rel=0.1)
    assert 0 <= r["clean_accuracy"] <= 1 and 0 <= r["pgd20_accuracy"] <= r["clean_accuracy"]
    assert len(r["epoch_images_per_s"]) == 1 and r["single_step_images_per_s"] > 0
    assert r["met"] is False  # targets are for a GPU
    assert "not measured (no GPU)" in out.with_suffix(".md").read_text()
    # the stand-in data and the run went to a temporary folder under --work, now removed
    assert sorted(p.name for p in tmp_path.iterdir()) == ["res.json", "res.md"]
