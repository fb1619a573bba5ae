"""Training streams from WebDataset tar shards."""

from __future__ import annotations

import pytest

from advscale.data import write_shards
from advscale.train import load_config, train


@pytest.fixture
def shards(fmnist, tmp_path):
    write_shards(fmnist("train", n=600), tmp_path / "train", shard_size=100)
    write_shards(fmnist("test", n=100), tmp_path / "val", shard_size=50)
    return tmp_path


def test_training_streams_from_shards(shards, tiny_settings):
    root = shards
    cfg = load_config(
        None,
        tiny_settings(
            **{
                "data.name": "webdataset",
                "data.data_dir": str(root / "train"),
                "data.val_dir": str(root / "val"),
                "data.num_classes": 10,
                "data.n_val": 100,
                "data.shuffle_buffer": 200,
                "epochs": 2,
                "eval.n": 100,
            }
        ),
    )
    summary = train(cfg, root / "run")
    assert summary["steps"] == 2 * (600 // 32)
    assert summary["clean_accuracy"] > 0.4
