"""WebDataset at scale: a validation draw that covers every class, class names kept beside the
shards, shards written from a folder one image at a time, a resumed epoch that skips without
decoding, augmentation per sample."""

from __future__ import annotations

import io
import tarfile

import numpy as np
import torch
from PIL import Image

from advscale.data import (
    ImageDataset,
    ShardLoader,
    Transform,
    list_shards,
    load_dataset,
    load_shards,
    write_shards,
)


def _sorted_by_class(n_per_class=30, classes=("cat", "dog", "emu", "fox")) -> ImageDataset:
    """Examples written class after class: the first samples of the shards are all 'cat'."""
    k = len(classes)
    labels = torch.arange(k).repeat_interleave(n_per_class)
    images = (labels.view(-1, 1, 1, 1) * 60).to(torch.uint8).expand(-1, 1, 5, 5).contiguous()
    images[:, 0, 0, 1] = torch.arange(len(labels)).to(torch.uint8)  # which example it is
    return ImageDataset(images, labels, list(classes))


def test_validation_draw_is_class_stratified_and_keeps_class_names(tmp_path):
    write_shards(_sorted_by_class(), tmp_path / "val", shard_size=40)
    val = load_shards(tmp_path / "val", 20)
    # Not the first 20 samples (all 'cat'): 5 of each class, and the classes by name.
    assert val.class_counts() == [5, 5, 5, 5] and val.classes == ["cat", "dog", "emu", "fox"]
    assert torch.equal(val.images[:, 0, 0, 0], val.labels.to(torch.uint8) * 60)
    again = load_shards(tmp_path / "val", 20)
    assert torch.equal(again.images, val.images)
    other = load_shards(tmp_path / "val", 20, seed=1)
    assert other.class_counts() == [5, 5, 5, 5] and not torch.equal(other.images, val.images)


def test_shards_are_written_from_a_folder_one_image_at_a_time(tmp_path):
    rng = np.random.default_rng(0)
    for c in ("a", "b"):
        (tmp_path / "f" / c).mkdir(parents=True)
        for i in range(6):
            arr = rng.integers(0, 256, (7, 9, 3), dtype=np.uint8)
            Image.fromarray(arr).save(tmp_path / "f" / c / f"{i}.png")
    folder = load_dataset("imagefolder", "train", tmp_path / "f")
    paths = write_shards(folder, tmp_path / "s", shard_size=4)
    assert len(paths) == 3 and not list((tmp_path / "s").glob(".*tmp"))
    back = load_shards(tmp_path / "s")
    loaded = folder.load()
    assert torch.equal(back.images, loaded.images) and torch.equal(back.labels, loaded.labels)
    assert back.classes == ["a", "b"]


def _broken_copy(src, dst, keys):
    """Copy a shard with the images of ``keys`` replaced by bytes that do not decode."""
    with tarfile.open(src) as tin, tarfile.open(dst, "w") as tout:
        for m in tin.getmembers():
            data = tin.extractfile(m).read()
            if m.name.split(".")[0] in keys and m.name.endswith(".png"):
                data = b"\x89PNG broken"
                m.size = len(data)
            tout.addfile(m, io.BytesIO(data))


def test_a_resumed_epoch_skips_samples_without_decoding_them(tmp_path):
    ds = _sorted_by_class(n_per_class=16)
    write_shards(ds, tmp_path / "s", shard_size=16)
    paths = list_shards(tmp_path / "s")

    def loader(ps):
        lo = ShardLoader(ps, 8, seed=2, shuffle_buffer=10,
                         transform=Transform(augment="crop_flip", padding=1, seed=2))  # fmt: skip
        lo.set_epoch(1)
        return lo

    full = list(loader(paths))
    assert len(full) == 8
    # Which samples fill the first 3 batches: break them; a skipping loader never decodes them.
    lo = loader(paths)
    first = []
    for (sample, _), _i in zip(lo.plan.samples(1), range(24), strict=False):
        first.append(sample["__key__"].decode())
    (tmp_path / "b").mkdir()
    for p in paths:
        _broken_copy(p, tmp_path / "b" / p.name, set(first))
    lo = loader(list_shards(tmp_path / "b"))
    lo.set_epoch(1, skip_batches=3)
    tail = list(lo)
    assert len(tail) == 5 and all(
        torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
        for a, b in zip(tail, full[3:], strict=True)
    )


def test_shard_batches_are_identical_decoded_in_0_or_2_workers(tmp_path):
    write_shards(_sorted_by_class(n_per_class=12), tmp_path / "s", shard_size=12)
    paths = list_shards(tmp_path / "s")
    runs = []
    for workers in (0, 2):
        lo = ShardLoader(paths, 6, seed=1, shuffle_buffer=8, image_size=7, workers=workers,
                         transform=Transform(augment="rrc_flip", seed=1))  # fmt: skip
        batches = []
        for epoch in (0, 1):
            lo.set_epoch(epoch)
            batches += list(lo)
        runs.append(batches)
    assert len(runs[0]) == 16 and runs[0][0][0].shape == (6, 1, 7, 7)
    assert all(
        torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(*runs, strict=True)
    )
