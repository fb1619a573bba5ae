"""WebDataset tar shards: written, streamed per epoch with shard shuffling and rank sharding, trained on."""

from __future__ import annotations

import hashlib
import io
import tarfile

import pytest
import torch

from advscale.data import DataError
from advscale.train import load_config, train
from advscale.train.webdataset import ShardLoader, list_shards, load_shards, write_shards


@pytest.fixture
def shards(fmnist, tmp_path):
    train_ds, val_ds = fmnist("train", n=600), fmnist("test", n=100)
    write_shards(train_ds, tmp_path / "train", shard_size=100)
    write_shards(val_ds, tmp_path / "val", shard_size=50)
    return tmp_path, train_ds


def _digest(x: torch.Tensor) -> str:
    return hashlib.sha1((x * 255).round().to(torch.uint8).numpy().tobytes()).hexdigest()


def test_shards_round_trip_the_images_and_labels(shards):
    root, train_ds = shards
    back = load_shards(root / "train")
    assert torch.equal(back.images, train_ds.images) and torch.equal(back.labels, train_ds.labels)
    assert (
        len(list_shards(root / "train")) == 6
        and len(list_shards(str(root / "train" / "*.tar"))) == 6
    )


def test_ranks_get_disjoint_equal_shares_and_epochs_reshuffle(shards):
    root, _ = shards
    paths = list_shards(root / "train")
    seen = []
    for rank in (0, 1):
        loader = ShardLoader(paths, 25, seed=3, rank=rank, world_size=2, shuffle_buffer=64)
        loader.set_epoch(0)
        batches = list(loader)
        assert len(batches) == len(loader) == 12  # 3 shards x 100 / 25
        seen.append({_digest(x[i]) for x, _ in batches for i in range(len(x))})
    assert len(seen[0]) == len(seen[1]) == 300 and not seen[0] & seen[1]

    loader = ShardLoader(paths, 25, seed=3, rank=0, world_size=2, shuffle_buffer=64)
    loader.set_epoch(0)
    first = [_digest(x[0]) for x, _ in loader]
    loader.set_epoch(0)
    assert [_digest(x[0]) for x, _ in loader] == first  # same epoch, same order
    loader.set_epoch(1)
    assert [_digest(x[0]) for x, _ in loader] != first


def test_a_bad_shard_is_named(tmp_path):
    bad = tmp_path / "s"
    bad.mkdir()
    with tarfile.open(bad / "a.tar", "w") as tar:
        info = tarfile.TarInfo("000.png")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"abc"))
    with pytest.raises(
        DataError, match=r"a.tar: sample '000' has files \['png'\]; needs an image .* and a label"
    ):
        load_shards(bad)
    with pytest.raises(DataError, match="no .tar shards found"):
        list_shards(tmp_path / "nothing")


def test_training_streams_from_shards(shards, tiny_settings):
    root, _ = shards
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
