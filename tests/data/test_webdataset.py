"""WebDataset tar shards: written, streamed per epoch with shard shuffling and rank sharding;
images must be 8-bit, labels within the classes, and every error names shard and sample."""

from __future__ import annotations

import hashlib
import io
import tarfile

import numpy as np
import pytest
import torch
from PIL import Image

from advscale.data import DataError, ShardLoader, list_shards, load_shards, write_shards


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


def _tar(path, samples):
    """Write ``samples`` ({key: {ext: bytes}}) as one tar shard; returns its path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w") as tar:
        for key, files in samples.items():
            for ext, data in files.items():
                info = tarfile.TarInfo(f"{key}.{ext}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return path


def _npy(arr) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


def _png(arr, **kw) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr, **kw).save(buf, format="PNG")
    return buf.getvalue()


def test_float_images_in_unit_range_are_scaled_by_255_and_rounded(tmp_path):
    rng = np.random.default_rng(0)
    floats = rng.random((1, 6, 6)).astype(np.float32)
    floats[0, 0, :2] = (0.0, 1.0)
    ints = rng.integers(0, 256, (1, 6, 6), dtype=np.uint8)
    shard = _tar(
        tmp_path / "s" / "a.tar",
        {"f": {"npy": _npy(floats), "cls": b"1"}, "u": {"npy": _npy(ints), "cls": b"0"}},
    )
    ds = load_shards(shard, num_classes=2)
    assert ds.images.dtype == torch.uint8
    expected = torch.from_numpy(np.rint(floats.astype(np.float64) * 255).astype(np.uint8))
    assert torch.equal(ds.images[0], expected) and ds.images[0].float().mean() > 50
    assert ds.images[0, 0, 0, 0] == 0 and ds.images[0, 0, 0, 1] == 255
    assert torch.equal(ds.images[1], torch.from_numpy(ints)) and ds.labels.tolist() == [1, 0]


@pytest.mark.parametrize(
    ("image", "match"),
    [
        (np.full((1, 4, 4), 2.0, np.float32), r"float32 with values in \[2, 2\]"),
        (
            np.full((1, 4, 4), np.nan, np.float32),
            r"float32 with values in \[nan, nan\]; float images must lie in \[0, 1\]",
        ),
        (np.full((1, 4, 4), 7, np.int16), r"dtype int16; store uint8"),
    ],
)
def test_images_that_are_not_8_bit_are_refused_naming_shard_and_sample(tmp_path, image, match):
    shard = _tar(
        tmp_path / "s" / "bad.tar",
        {
            "ok": {"npy": _npy(np.zeros((1, 4, 4), np.uint8)), "cls": b"0"},
            "k7": {"npy": _npy(image), "cls": b"0"},
        },
    )
    with pytest.raises(DataError, match=r"bad\.tar: sample 'k7': npy image of " + match):
        load_shards(shard)


def test_16_bit_pictures_are_refused_rather_than_clipped(tmp_path):
    wide = _png(np.full((4, 4), 40000, np.uint16))
    shard = _tar(tmp_path / "s" / "w.tar", {"deep": {"png": wide, "cls": b"0"}})
    with pytest.raises(DataError, match=r"w\.tar: sample 'deep': png image in mode I"):
        load_shards(shard)


def test_corrupt_image_names_shard_and_sample(tmp_path):
    good = _png(np.zeros((4, 4), np.uint8))
    shard = _tar(
        tmp_path / "s" / "c.tar",
        {"fine": {"png": good, "cls": b"0"}, "broken": {"png": good[:30], "cls": b"0"}},
    )
    with pytest.raises(DataError, match=r"c\.tar: sample 'broken': cannot read image"):
        load_shards(shard)
    npy = _tar(tmp_path / "n" / "n.tar", {"x9": {"npy": b"not an npy file", "cls": b"0"}})
    with pytest.raises(DataError, match=r"n\.tar: sample 'x9': cannot read the npy image"):
        load_shards(npy)


@pytest.mark.parametrize(("label", "bound"), [(-100, r"\[0, 3\)"), (3, r"\[0, 3\)")])
def test_labels_outside_the_classes_are_refused(tmp_path, label, bound):
    img = _png(np.zeros((4, 4), np.uint8))
    shard = _tar(
        tmp_path / "s" / "l.tar",
        {"a": {"png": img, "cls": b"2"}, "b": {"png": img, "cls": str(label).encode()}},
    )
    msg = rf"l\.tar: sample 'b': label {label} is outside the classes \({bound}\)"
    with pytest.raises(DataError, match=msg):
        load_shards(shard, num_classes=3)
    with pytest.raises(DataError, match=msg):
        list(ShardLoader([shard], 2, num_classes=3))
    if label < 0:  # an ignore label is refused even when the class count is not known
        with pytest.raises(DataError, match=r"sample 'b': label -100 is outside"):
            load_shards(shard)
