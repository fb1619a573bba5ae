"""BatchLoader: full coverage per epoch, disjoint shards, reproducible shuffles."""

from __future__ import annotations

import pytest
import torch

from advscale.data import BatchLoader, DataError, ImageDataset


def _dataset(n: int = 103) -> ImageDataset:
    # Pixel (0, 0) of image i stores i, so batches tell which examples they hold.
    images = torch.zeros(n, 1, 4, 4, dtype=torch.uint8)
    images[:, 0, 0, 0] = torch.arange(n, dtype=torch.uint8)
    return ImageDataset(images, torch.arange(n) % 10, [str(c) for c in range(10)], name="toy")


def _ids(loader: BatchLoader) -> list[int]:
    return [round(v * 255) for x, _ in loader for v in x[:, 0, 0, 0].tolist()]


def test_every_example_exactly_once_per_epoch():
    ds = _dataset()
    loader = BatchLoader(ds, batch_size=16, seed=3)
    for epoch in range(3):
        loader.set_epoch(epoch)
        ids = _ids(loader)
        assert sorted(ids) == list(range(len(ds)))
    assert len(loader) == 7 and sum(1 for _ in loader) == 7


def test_batches_are_float_in_unit_range_with_matching_labels():
    ds = _dataset()
    x, y = next(iter(BatchLoader(ds, batch_size=8, seed=0)))
    assert x.dtype == torch.float32 and x.shape == (8, 1, 4, 4) and x.max() <= 1.0
    assert torch.equal(y, torch.tensor([round(v * 255) % 10 for v in x[:, 0, 0, 0].tolist()]))


def test_same_seed_and_epoch_same_order_other_epoch_other_order():
    ds = _dataset()
    a, b = BatchLoader(ds, 10, seed=7), BatchLoader(ds, 10, seed=7)
    a.set_epoch(2)
    b.set_epoch(2)
    assert _ids(a) == _ids(b)
    b.set_epoch(3)
    assert _ids(a) != _ids(b)
    assert _ids(BatchLoader(ds, 10, shuffle=False)) == list(range(len(ds)))


@pytest.mark.parametrize("n", [103, 104, 3])
def test_two_ranks_get_disjoint_equal_shards_covering_everything(n):
    ds = _dataset(n)
    loaders = [BatchLoader(ds, 4, seed=1, rank=r, world_size=2) for r in range(2)]
    for ld in loaders:
        ld.set_epoch(5)
    shards = [ld.indices() for ld in loaders]
    assert len(shards[0][0]) == len(shards[1][0]) == -(-n // 2)
    real = [set(idx[:k].tolist()) for idx, k in shards]
    assert real[0].isdisjoint(real[1])
    assert real[0] | real[1] == set(range(n))
    assert shards[0][1] + shards[1][1] == n
    # What the loaders yield is exactly the shards, padding included.
    assert [sorted(_ids(ld)) for ld in loaders] == [sorted(idx.tolist()) for idx, _ in shards]


def test_padding_when_more_ranks_than_examples():
    ds = _dataset(3)
    shards = [BatchLoader(ds, 1, rank=r, world_size=5, shuffle=False).indices() for r in range(5)]
    assert [idx.tolist() for idx, _ in shards] == [[0], [1], [2], [0], [1]]
    assert [k for _, k in shards] == [1, 1, 1, 0, 0]


def test_drop_last():
    ds = _dataset(103)
    loader = BatchLoader(ds, 16, drop_last=True)
    sizes = [len(x) for x, _ in loader]
    assert sizes == [16] * 6 and len(loader) == 6
    with pytest.raises(DataError, match="larger than the 103 examples"):
        BatchLoader(ds, 64, drop_last=True, world_size=2, rank=0)


def test_bad_arguments():
    ds = _dataset(10)
    with pytest.raises(DataError, match="batch_size must be >= 1"):
        BatchLoader(ds, 0)
    with pytest.raises(DataError, match="rank 2 is not in"):
        BatchLoader(ds, 2, rank=2, world_size=2)
