"""Streamed image folders: decoded in worker processes, the same batches with any number of
workers, resumed mid-epoch without decoding what is skipped, and bad files or dead workers
ending the run with one line."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from advscale.data import DataError, Transform, load_dataset
from advscale.data.stream import IndexPlan, StreamLoader

N_PER_CLASS = 12


@pytest.fixture
def folder(tmp_path) -> Path:
    rng = np.random.default_rng(0)
    for c in ("ant", "bee", "cow"):
        (tmp_path / "train" / c).mkdir(parents=True)
        (tmp_path / "val" / c).mkdir(parents=True)
        for i in range(N_PER_CLASS):
            arr = rng.integers(0, 256, (14, 14, 3), dtype=np.uint8)
            Image.fromarray(arr).save(tmp_path / "train" / c / f"{i:03d}.jpg", quality=95)
        Image.fromarray(arr).save(tmp_path / "val" / c / "0.png")
    return tmp_path


def _loader(folder, workers=0, augment="crop_flip", batch=8, **kw) -> StreamLoader:
    """Batches travel in the shared ring unless ``example_shape`` says otherwise."""
    ds = load_dataset("imagefolder", "train", folder).with_transform(
        Transform(size=(12, 12), augment=augment, seed=5)
    )
    kw.setdefault("example_shape", (3, 12, 12))
    return StreamLoader(ds, IndexPlan(len(ds), batch, seed=5, rank=0, world_size=1),
                        workers=workers, **kw)  # fmt: skip


def _epochs(loader, epochs=(0, 1)) -> list[tuple[torch.Tensor, torch.Tensor]]:
    out = []
    for e in epochs:
        loader.set_epoch(e)
        out += list(loader)
    return out


def _same(a, b) -> bool:
    return len(a) == len(b) and all(
        torch.equal(x, u) and torch.equal(y, v) for (x, y), (u, v) in zip(a, b, strict=True)
    )


@pytest.mark.parametrize("augment", ["crop_flip", "rrc_flip"])
def test_batches_are_identical_with_0_1_and_4_workers(folder, augment):
    ref = _epochs(_loader(folder, 0, augment))
    assert len(ref) == 8 and ref[0][0].shape == (8, 3, 12, 12)
    for workers in (1, 4):
        loader = _loader(folder, workers, augment)
        assert loader.ring_slots == (2 * workers + 1,) * 2  # in the ring
        assert _same(_epochs(loader), ref), workers
    # The ordinary transport (no ring), and a ring too small for the batches (they travel
    # the ordinary way): the same batches.
    for shape in (None, (3, 4, 4)):
        assert _same(_epochs(_loader(folder, 2, augment, example_shape=shape)), ref), shape
    # Epochs differ (order and draws); images are float [0, 1].
    assert not torch.equal(ref[0][0], ref[4][0])
    assert ref[0][0].min() >= 0 and ref[0][0].max() <= 1


def test_batches_kept_by_the_consumer_are_not_overwritten_by_the_ring(folder):
    """Every batch is its own tensor: a training loop keeping batches (or an epoch abandoned
    half way, its workers' batches still arriving) never sees a ring slot reused under it."""
    ref = _epochs(_loader(folder, 0), epochs=(0, 1, 2))
    loader = _loader(folder, 2, prefetch=1)  # 3 slots for 4 batches an epoch
    kept = []
    for epoch in (0, 1, 2):
        loader.set_epoch(epoch)
        it = iter(loader)
        kept.append(next(it))
        if epoch == 1:
            del it  # abandoned after one batch, the others in flight
            loader.set_epoch(1, skip_batches=1)
            it = iter(loader)
        kept += list(it)
    assert _same(kept, ref)
    assert loader.ring_slots == (3, 3)  # every slot free again


def test_resuming_mid_epoch_neither_decodes_nor_changes_anything(folder):
    ref = _epochs(_loader(folder, 0), epochs=(1,))
    loader = _loader(folder, 2)
    # Break every file of the first two batches of epoch 1: a loader that decoded what it
    # skips would fail on them.
    ds = load_dataset("imagefolder", "train", folder)
    order = IndexPlan(len(ds), 8, seed=5, rank=0, world_size=1).batches(1, 0)
    for _ in range(2):
        for _, i in next(order):
            ds.path(i).write_bytes(b"not a jpeg")
    loader.set_epoch(1, skip_batches=2)
    assert _same(list(loader), ref[2:])


def test_a_corrupt_jpeg_is_named_from_inside_a_worker(folder):
    bad = folder / "train" / "bee" / "005.jpg"
    bad.write_bytes(bad.read_bytes()[:200])  # truncated mid-scan
    loader = _loader(folder, 2)
    loader.set_epoch(0)
    with pytest.raises(DataError) as e:
        list(loader)
    msg = str(e.value)
    assert "bee/005.jpg" in msg and "on_corrupt: skip" in msg and "\n" not in msg


def test_skipped_corrupt_files_are_counted_and_reported(folder, capfd):
    for name in ("001.jpg", "007.jpg"):
        (folder / "train" / "cow" / name).write_bytes(b"\xff\xd8 garbage")
    loader = _loader(folder, 2, batch=6, on_corrupt="skip")  # 6 batches hold every image
    loader.set_epoch(0)
    batches = list(loader)
    assert len(batches) == 6 and sum(len(y) for _, y in batches) == 3 * N_PER_CLASS - 2
    assert len(loader.skipped) == 2 and all("cow/0" in s for s in loader.skipped)
    err = capfd.readouterr().err
    assert "skipped (1 so far)" in err and "skipped (2 so far)" in err and "cow/007.jpg" in err


class _DiesOn:
    """A source whose worker process is killed (as the system's OOM killer would) on key 3."""

    def __init__(self, ds):
        self.ds = ds

    def __getitem__(self, key):
        if key[1] == 3:
            os.kill(os.getpid(), signal.SIGKILL)
        return self.ds[key]


def test_a_worker_that_dies_ends_the_run_with_a_clear_message(folder):
    ds = load_dataset("imagefolder", "train", folder).resize(12)
    plan = IndexPlan(len(ds), 4, seed=0, rank=0, world_size=1, shuffle=False)
    loader = StreamLoader(_DiesOn(ds), plan, workers=2, name="imagefolder:train")
    loader.set_epoch(0)
    with pytest.raises(DataError, match=r"imagefolder:train: a data loader worker failed: .*lower "
                       r"data\.workers \(now 2\)"):  # fmt: skip
        list(loader)


def test_ranks_share_out_the_examples(folder):
    ds = load_dataset("imagefolder", "train", folder).resize(12)
    seen = []
    for rank in (0, 1):
        plan = IndexPlan(len(ds), 6, seed=2, rank=rank, world_size=2)
        seen.append([i for b in plan.batches(0, 0) for _, i in b])
    assert len(seen[0]) == len(seen[1]) == 18 and not set(seen[0]) & set(seen[1])


class _MixedSizes:
    """A source whose examples are not all one size (shards without image_size)."""

    def __getitem__(self, key):
        side = 8 if key[1] % 2 else 6
        return np.zeros((3, side, side), dtype=np.uint8), 0


@pytest.mark.parametrize("workers", [0, 2])
def test_a_batch_of_mixed_sizes_is_refused_saying_what_to_set(workers):
    plan = IndexPlan(8, 4, seed=0, rank=0, world_size=1)
    loader = StreamLoader(_MixedSizes(), plan, workers=workers, example_shape=(3, 8, 8),
                          on_corrupt="skip")  # fmt: skip
    loader.set_epoch(0)
    with pytest.raises(DataError, match=r"images of different shapes .* set data\.image_size"):
        list(loader)


def test_the_float_batch_is_to_float_bit_for_bit():
    """Streamed batches (made with NumPy in this process) and batches held in memory (made by
    ``to_float`` on the device) hold the same floats for every pixel value."""
    from advscale.data import to_float
    from advscale.data.stream import as_float

    u8 = np.arange(256, dtype=np.uint8).reshape(1, 1, 16, 16).repeat(3, axis=1)
    got, ref = as_float(u8), to_float(torch.from_numpy(u8))
    assert got.dtype == ref.dtype == torch.float32 and got.shape == ref.shape
    assert torch.equal(got.view(torch.int32), ref.view(torch.int32))
