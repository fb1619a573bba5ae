"""Batches of a dataset held in memory, and the order every loader shares out by rank.

Both loaders (this in-memory one and :class:`advscale.data.stream.StreamLoader`) take their
epoch's order from :func:`rank_indices` and start an epoch with ``set_epoch(epoch,
skip_batches=k)``: a resumed run starts at batch ``k`` without producing the batches before it.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor

from advscale.data.augment import Transform, augment_batch
from advscale.data.base import DataError, ImageDataset, to_float


def rank_indices(
    n: int, seed: int, epoch: int, shuffle: bool, rank: int, world_size: int
) -> tuple[Tensor, int]:
    """This rank's example indices of ``n`` in ``epoch``, and how many are real (not padding).

    The shuffle follows ``seed + epoch``. Like ``DistributedSampler``, the order is padded by
    repeating its start until it divides evenly, then rank ``r`` takes every ``world_size``-th
    index from ``r``: the real ones come first, the rest repeat examples to even out the shards.
    """
    if shuffle:
        order = torch.randperm(n, generator=torch.Generator().manual_seed(seed + epoch))
    else:
        order = torch.arange(n)
    per_rank = -(-n // world_size)
    total = per_rank * world_size
    if total > n:
        order = order.repeat(-(-total // n))[:total]  # world_size may exceed n
    return order[rank:total:world_size], len(range(rank, n, world_size))


def check_batching(
    name: str, n: int, batch_size: int, rank: int, world_size: int, drop_last: bool
) -> None:
    """Refuse a batch size, rank or size that leaves nothing to load (DataError naming it)."""
    if batch_size < 1:
        raise DataError(f"batch_size must be >= 1, got {batch_size}")
    if world_size < 1 or not 0 <= rank < world_size:
        raise DataError(f"rank {rank} is not in [0, world_size={world_size})")
    if n == 0:
        raise DataError(f"{name} is empty: nothing to load")
    if batch_size * world_size > n and drop_last:
        raise DataError(
            f"batch_size {batch_size} x {world_size} process(es) is larger than the "
            f"{n} examples of {name}"
        )


def batches_per_epoch(n: int, batch_size: int, world_size: int, drop_last: bool) -> int:
    per_rank = -(-n // world_size)
    return per_rank // batch_size if drop_last else -(-per_rank // batch_size)


class BatchLoader:
    """Fast in-memory batches ``(x float [0,1], y int64)`` on ``device``.

    Shuffles with a generator seeded by ``seed + epoch`` (call ``set_epoch``), so runs are
    reproducible and resumable; with ``world_size > 1`` each rank gets a disjoint, equal-length
    shard (:func:`rank_indices`). ``drop_last`` drops each rank's last partial batch.
    ``transform`` with an augmentation augments each uint8 batch on ``device``, with draws
    fixed by (its seed, epoch, example index) (:func:`advscale.data.augment.augment_batch`).
    """

    def __init__(
        self,
        dataset: ImageDataset,
        batch_size: int,
        shuffle: bool = True,
        drop_last: bool = False,
        seed: int = 0,
        device: str | torch.device = "cpu",
        rank: int = 0,
        world_size: int = 1,
        transform: Transform | None = None,
    ) -> None:
        check_batching(dataset.name, len(dataset), batch_size, rank, world_size, drop_last)
        self.dataset, self.batch_size = dataset, batch_size
        self.shuffle, self.drop_last = shuffle, drop_last
        self.seed, self.device = seed, torch.device(device)
        self.rank, self.world_size = rank, world_size
        self.transform = transform
        self.epoch, self.skip = 0, 0

    def set_epoch(self, epoch: int, skip_batches: int = 0) -> None:
        """Select the shuffle of ``epoch`` and start it at batch ``skip_batches``; the same seed
        and epoch always give the same order."""
        self.epoch, self.skip = epoch, skip_batches

    def indices(self) -> tuple[Tensor, int]:
        """This rank's example indices for the current epoch, and how many are real."""
        return rank_indices(
            len(self.dataset), self.seed, self.epoch, self.shuffle, self.rank, self.world_size
        )

    def __len__(self) -> int:
        return batches_per_epoch(
            len(self.dataset), self.batch_size, self.world_size, self.drop_last
        )

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        idx, _ = self.indices()
        images, labels = self.dataset.images, self.dataset.labels
        t = self.transform
        for start in range(self.skip * self.batch_size, len(idx), self.batch_size):
            b = idx[start : start + self.batch_size]
            if self.drop_last and len(b) < self.batch_size:
                break
            x = images[b].to(self.device, non_blocking=True)
            if t is not None and t.random:
                x = augment_batch(x, b, self.epoch, t)
            yield to_float(x), labels[b].to(self.device, non_blocking=True)
