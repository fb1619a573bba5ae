"""WebDataset shards streamed for training: read in this process, decoded in worker processes.

Each epoch the shard list is shuffled (seed + epoch), shards are dealt to processes
round-robin, and samples pass through a shuffle buffer, all in this process and undecoded
(:class:`ShardPlan`); worker processes decode, resize and augment each sample
(:class:`ShardSource`), its draws fixed by (seed, epoch, the shard's name and the sample's key).
Every process yields the same number of batches (the smallest share, in whole batches), so
distributed processes stay in step. A resumed epoch reads the samples it skips from the tars
but decodes none of them.
"""

from __future__ import annotations

import random
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from advscale.data.augment import Transform, eval_image, train_image
from advscale.data.base import DataError
from advscale.data.decode import to_chw
from advscale.data.stream import StreamLoader
from advscale.data.webdataset import count_samples, decode_sample, iter_tar_samples

Raw = tuple[dict[str, bytes], str]


class ShardPlan:
    """This process's samples of each epoch, undecoded, cut into batches."""

    def __init__(self, shards: Sequence[Path], batch_size: int, *, seed: int, rank: int,
                 world_size: int, shuffle_buffer: int) -> None:  # fmt: skip
        self.shards, self.batch_size, self.seed = list(shards), batch_size, seed
        self.rank, self.world_size, self.shuffle_buffer = rank, world_size, shuffle_buffer
        self.counts = [count_samples(p) for p in self.shards]
        self.epoch = 0

    def assignment(self, epoch: int) -> list[list[int]]:
        g = torch.Generator().manual_seed(self.seed + epoch)
        order = torch.randperm(len(self.shards), generator=g).tolist()
        return [order[r :: self.world_size] for r in range(self.world_size)]

    def __len__(self) -> int:
        shares = [sum(self.counts[i] for i in part) for part in self.assignment(self.epoch)]
        return min(shares) // self.batch_size

    def samples(self, epoch: int) -> Iterator[Raw]:
        """(undecoded sample, its shard) in this epoch's shuffled order."""
        rng = random.Random((self.seed + epoch) * 1_000_003 + self.rank)
        buf: list[Raw] = []
        for i in self.assignment(epoch)[self.rank]:
            path = str(self.shards[i])
            for sample in iter_tar_samples(self.shards[i]):
                buf.append((sample, path))
                if len(buf) >= self.shuffle_buffer:
                    j = rng.randrange(len(buf))
                    buf[j], buf[-1] = buf[-1], buf[j]
                    yield buf.pop()
        rng.shuffle(buf)
        yield from buf

    def batches(self, epoch: int, skip: int) -> Iterator[list[Any]]:
        n_batches, done, batch = len(self), 0, []
        for sample, path in self.samples(epoch):
            batch.append((epoch, sample, path))
            if len(batch) < self.batch_size:
                continue
            if done >= skip:
                yield batch
            batch, done = [], done + 1
            if done == n_batches:
                return


class ShardSource:
    """A worker's work: one undecoded sample -> (uint8 image (C, H, W), label)."""

    def __init__(self, num_classes: int | None, transform: Transform) -> None:
        self.num_classes, self.transform = num_classes, transform

    def describe(self, key: tuple[int, dict[str, bytes], str]) -> str:
        return f"{key[2]}: sample {key[1].get('__key__', b'?').decode()!r}"

    def __getitem__(self, key: tuple[int, dict[str, bytes], str]) -> tuple[np.ndarray, int]:
        epoch, sample, path = key
        img, label = decode_sample(sample, path, self.num_classes)
        t = self.transform
        if not (t.random or t.size or t.eval_resize):
            return img.numpy(), label
        hwc = img.permute(1, 2, 0).numpy()
        im = Image.fromarray(hwc[..., 0] if hwc.shape[-1] == 1 else hwc)
        if not t.random:
            return to_chw(eval_image(im, t)), label
        index = zlib.crc32(f"{Path(path).name}/{sample['__key__'].decode()}".encode())
        return train_image(im, t, epoch, index & 0x7FFFFFFF), label


class ShardLoader:
    """Stream batches ``(x float [0,1], y int64)`` from tar shards; same interface as BatchLoader.

    Args:
        shards: shard paths (see :func:`advscale.data.list_shards`).
        batch_size: examples per batch in this process; the last partial batch is dropped.
        seed: shard order, shuffle buffer and augmentation follow ``seed + epoch`` (and the rank).
        rank, world_size: this process's share of the shards.
        shuffle_buffer: samples held for shuffling (memory: that many undecoded samples).
        image_size: resize images to this size.
        num_classes: labels must lie in ``[0, num_classes)`` (negative labels are always refused).
        transform: the augmentation (its size defaults to ``image_size``).
        workers, prefetch, on_corrupt: as :class:`advscale.data.stream.StreamLoader`.
    """

    def __init__(
        self,
        shards: Sequence[Path],
        batch_size: int,
        *,
        seed: int = 0,
        device: str | torch.device = "cpu",
        rank: int = 0,
        world_size: int = 1,
        shuffle_buffer: int = 1000,
        image_size: int | None = None,
        num_classes: int | None = None,
        transform: Transform | None = None,
        workers: int = 0,
        prefetch: int = 2,
        on_corrupt: str = "error",
    ) -> None:
        if world_size > len(shards):
            raise DataError(
                f"{len(shards)} shard(s) for {world_size} processes: write at least one shard per process"
            )
        self.plan = ShardPlan(shards, batch_size, seed=seed, rank=rank, world_size=world_size,
                              shuffle_buffer=shuffle_buffer)  # fmt: skip
        if len(self.plan) == 0:
            raise DataError(
                f"batch_size {batch_size} x {world_size} process(es) is larger than the "
                f"{sum(self.plan.counts)} samples in the shards"
            )
        t = transform or Transform(seed=seed)
        if image_size is not None:
            t = Transform(**{**t.__dict__, "size": (image_size, image_size)})
        # Without image_size the samples' sizes are not known before decoding them.
        shape = (3, *t.size) if t.size else None
        self.stream = StreamLoader(ShardSource(num_classes, t), self.plan, device=device,
                                   workers=workers, prefetch=prefetch, on_corrupt=on_corrupt,
                                   name="webdataset shards", example_shape=shape)  # fmt: skip

    @property
    def num_samples(self) -> int:
        return sum(self.plan.counts)

    def set_epoch(self, epoch: int, skip_batches: int = 0) -> None:
        """The next iteration gives ``epoch``'s batches from batch ``skip_batches`` on; the
        samples of the batches before it are read from the tars but not decoded."""
        self.plan.epoch = epoch
        self.stream.set_epoch(epoch, skip_batches)

    def __len__(self) -> int:
        return len(self.plan)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        return iter(self.stream)
