"""In-memory image datasets: uint8 storage, float [0, 1] batches."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor


class DataError(ValueError):
    """Bad or missing data; the message names the file or directory and the problem."""


@dataclass
class ImageDataset:
    """Images as uint8 ``(N, C, H, W)``, labels as int64 ``(N,)``, plus class names.

    ``mean``/``std`` are the per-channel statistics a model trained on it normalizes with
    (inside the model, see ``advscale.models.Normalize``); inputs themselves stay in [0, 1].
    """

    images: Tensor
    labels: Tensor
    classes: list[str]
    name: str = "dataset"
    mean: tuple[float, ...] = field(default=(0.5,))
    std: tuple[float, ...] = field(default=(0.5,))

    def __post_init__(self) -> None:
        if self.images.ndim != 4:
            raise DataError(f"{self.name}: images must be (N, C, H, W), got shape {tuple(self.images.shape)}")
        if len(self.images) != len(self.labels):
            raise DataError(f"{self.name}: {len(self.images)} images but {len(self.labels)} labels")
        if len(self.labels) and (int(self.labels.min()) < 0 or int(self.labels.max()) >= len(self.classes)):
            raise DataError(
                f"{self.name}: labels out of range [0, {len(self.classes) - 1}] "
                f"(min {int(self.labels.min())}, max {int(self.labels.max())})"
            )

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def channels(self) -> int:
        return int(self.images.shape[1])

    @property
    def image_size(self) -> tuple[int, int]:
        return int(self.images.shape[2]), int(self.images.shape[3])

    def subset(self, indices: Sequence[int] | Tensor) -> ImageDataset:
        idx = torch.as_tensor(indices, dtype=torch.long)
        return ImageDataset(self.images[idx], self.labels[idx], self.classes, self.name, self.mean, self.std)

    def take(self, n: int | None, seed: int = 0) -> ImageDataset:
        """A class-stratified random subset of ``n`` examples (all when ``n`` is None or too big)."""
        if n is None or n >= len(self):
            return self
        g = torch.Generator().manual_seed(seed)
        perm = torch.randperm(len(self), generator=g)
        # Round-robin over classes in a random order keeps the class balance of small subsets.
        by_class = [perm[self.labels[perm] == c] for c in range(self.num_classes)]
        order = torch.stack([
            torch.nn.functional.pad(b, (0, len(perm) - len(b)), value=-1) for b in by_class
        ], 1).flatten()
        order = order[order >= 0][:n]
        return self.subset(order)

    def tensors(self, device: str | torch.device = "cpu") -> tuple[Tensor, Tensor]:
        """All images as float [0, 1] and labels, on ``device``."""
        return to_float(self.images.to(device)), self.labels.to(device)


def to_float(images: Tensor) -> Tensor:
    """uint8 [0, 255] -> float32 [0, 1]; float input is returned unchanged."""
    return images.float().div_(255.0) if images.dtype == torch.uint8 else images


class BatchLoader:
    """Fast in-memory batches ``(x float [0,1], y int64)`` on ``device``.

    Shuffles with its own generator seeded by ``seed + epoch`` (call ``set_epoch``), so runs are
    reproducible and resumable. With ``world_size > 1`` each rank gets a disjoint, equal-length
    shard like ``DistributedSampler``; padded duplicates are marked by ``last_real`` so metrics
    do not count them twice.
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
    ) -> None:
        if batch_size < 1:
            raise DataError(f"batch_size must be >= 1, got {batch_size}")
        if batch_size * world_size > len(dataset) and drop_last:
            raise DataError(
                f"batch_size {batch_size} x {world_size} process(es) is larger than the "
                f"{len(dataset)} examples of {dataset.name}"
            )
        self.dataset, self.batch_size, self.shuffle, self.drop_last = dataset, batch_size, shuffle, drop_last
        self.seed, self.device, self.rank, self.world_size = seed, torch.device(device), rank, world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def indices(self) -> tuple[Tensor, int]:
        """This rank's example indices for the current epoch, and how many are real (not padding)."""
        n = len(self.dataset)
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(n, generator=g)
        else:
            order = torch.arange(n)
        per_rank = -(-n // self.world_size)
        total = per_rank * self.world_size
        if total > n:
            order = torch.cat([order, order[: total - n]])
        mine = order[self.rank : total : self.world_size]
        real = int(((torch.arange(total)[self.rank : total : self.world_size]) < n).sum())
        return mine, real

    def __len__(self) -> int:
        per_rank = -(-len(self.dataset) // self.world_size)
        return per_rank // self.batch_size if self.drop_last else -(-per_rank // self.batch_size)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        idx, _ = self.indices()
        images, labels = self.dataset.images, self.dataset.labels
        for start in range(0, len(idx), self.batch_size):
            b = idx[start : start + self.batch_size]
            if self.drop_last and len(b) < self.batch_size:
                break
            x = to_float(images[b].to(self.device, non_blocking=True))
            yield x, labels[b].to(self.device, non_blocking=True)
