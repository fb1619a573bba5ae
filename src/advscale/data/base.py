"""In-memory image datasets: uint8 storage, float [0, 1] batches."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from advscale.errors import UserError

SYSTEM_DATA_ROOT = Path("/usr/share/datasets")
# ITU-R 601-2 luma, the weights Pillow's "L" conversion uses.
LUMA_WEIGHTS = (0.299, 0.587, 0.114)


class DataError(UserError):
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
            raise DataError(
                f"{self.name}: images must be (N, C, H, W), got shape {tuple(self.images.shape)}"
            )
        if self.labels.ndim != 1:
            raise DataError(
                f"{self.name}: labels must be (N,), got shape {tuple(self.labels.shape)}"
            )
        if len(self.images) != len(self.labels):
            raise DataError(f"{self.name}: {len(self.images)} images but {len(self.labels)} labels")
        if len(self.labels) and (
            int(self.labels.min()) < 0 or int(self.labels.max()) >= len(self.classes)
        ):
            raise DataError(
                f"{self.name}: labels out of range [0, {len(self.classes) - 1}] "
                f"(min {int(self.labels.min())}, max {int(self.labels.max())})"
            )
        # A single value (the default) stands for every channel.
        if len(self.mean) == 1 and self.channels > 1:
            self.mean = tuple(self.mean) * self.channels
        if len(self.std) == 1 and self.channels > 1:
            self.std = tuple(self.std) * self.channels
        if len(self.mean) != self.channels or len(self.std) != self.channels:
            raise DataError(
                f"{self.name}: mean {self.mean} / std {self.std} need one value per channel "
                f"({self.channels})"
            )

    def __len__(self) -> int:
        return len(self.labels)

    def __repr__(self) -> str:
        c, (h, w) = self.channels, self.image_size
        return f"ImageDataset({self.name!r}, n={len(self)}, shape={c}x{h}x{w}, classes={self.num_classes})"

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def channels(self) -> int:
        return int(self.images.shape[1])

    @property
    def image_size(self) -> tuple[int, int]:
        return int(self.images.shape[2]), int(self.images.shape[3])

    def class_counts(self) -> list[int]:
        """Number of examples of each class, in class order."""
        return torch.bincount(self.labels, minlength=self.num_classes).tolist()

    def with_fields(self, **changes) -> ImageDataset:
        """This dataset with the given fields replaced (checked as a new one)."""
        fields = dict(
            images=self.images,
            labels=self.labels,
            classes=self.classes,
            name=self.name,
            mean=self.mean,
            std=self.std,
        )
        fields.update(changes)
        return ImageDataset(**fields)

    def subset(self, indices: Sequence[int] | Tensor) -> ImageDataset:
        """The examples at ``indices``, in that order."""
        idx = torch.as_tensor(indices, dtype=torch.long)
        return self.with_fields(images=self.images[idx], labels=self.labels[idx])

    def take(self, n: int | None, seed: int = 0) -> ImageDataset:
        """A class-stratified random subset of ``n`` examples (all when ``n`` is None or too big)."""
        if n is None or n >= len(self):
            return self
        return self.subset(stratified_order(self.labels, self.num_classes, n, seed))

    def filter_classes(self, classes: Sequence[int], relabel: bool = True) -> ImageDataset:
        """Only the examples of ``classes`` (label indices).

        With ``relabel`` the labels become ``0..len(classes)-1`` in the order given and
        ``classes`` names follow, so a model with ``len(classes)`` outputs can train on it
        (e.g. pretrain on Fashion-MNIST classes 0-4, fine-tune on 5-9). Without it, labels and
        class names are kept as they are.
        """
        keep, labels, names, tag = class_filter(
            self.name, self.labels, self.classes, classes, relabel
        )
        return self.with_fields(images=self.images[keep], labels=labels, classes=names, name=tag)

    def resize(self, image_size: int | tuple[int, int]) -> ImageDataset:
        """Images resized (bilinear, antialiased when shrinking) to ``image_size``.

        ``mean``/``std`` are kept: resampling barely moves them.
        """
        size = size_pair(image_size)
        if size == self.image_size:
            return self
        return self.with_fields(
            images=resize_images(self.images, size), name=f"{self.name}@{size[0]}x{size[1]}"
        )

    def to_channels(self, channels: int) -> ImageDataset:
        """Images with ``channels`` channels: 1 -> 3 repeats grey, 3 -> 1 takes luma (ITU-R 601-2).

        Grey to RGB repeats ``mean``/``std``; RGB to grey takes the luma of ``mean`` and
        recomputes ``std`` from the converted images, which luma does not preserve.
        """
        if channels == self.channels:
            return self
        if self.channels == 1 and channels == 3:
            return self.with_fields(
                images=self.images.expand(-1, 3, -1, -1).contiguous(),
                mean=self.mean * 3,
                std=self.std * 3,
            )
        if self.channels == 3 and channels == 1:
            images = rgb_to_grey(self.images)
            mean = sum(w * m for w, m in zip(LUMA_WEIGHTS, self.mean, strict=True))
            _, std = channel_stats(images)
            return self.with_fields(images=images, mean=(round(mean, 4),), std=std)
        raise DataError(
            f"{self.name}: cannot convert {self.channels}-channel images to {channels} channels "
            "(supported: 1 <-> 3)"
        )

    def tensors(self, device: str | torch.device = "cpu") -> tuple[Tensor, Tensor]:
        """All images as float [0, 1] and labels, on ``device``."""
        return to_float(self.images.to(device)), self.labels.to(device)


def to_float(images: Tensor) -> Tensor:
    """uint8 [0, 255] -> float32 [0, 1]; float input is returned unchanged."""
    return images.float().div_(255.0) if images.dtype == torch.uint8 else images


def size_pair(size: int | Sequence[int]) -> tuple[int, int]:
    """``size`` as (height, width): an int is a square."""
    if isinstance(size, int):
        h = w = size
    else:
        h, w = (int(s) for s in size)
    if h < 1 or w < 1:
        raise DataError(f"image_size must be positive, got {size}")
    return h, w


def resize_images(images: Tensor, size: int | tuple[int, int], chunk: int = 4096) -> Tensor:
    """Resize uint8 ``(N, C, H, W)`` images bilinearly to ``size``; returns uint8.

    Works in chunks so that a 60k-image dataset never needs a full float copy.
    """
    size = size_pair(size)
    if images.dtype != torch.uint8:
        raise DataError(f"resize_images needs uint8 images, got {images.dtype}")
    out = torch.empty((len(images), images.shape[1], *size), dtype=torch.uint8)
    shrinking = size[0] < images.shape[2] or size[1] < images.shape[3]
    for start in range(0, len(images), chunk):
        x = images[start : start + chunk].float()
        y = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=shrinking)
        out[start : start + chunk] = y.round_().clamp_(0, 255).to(torch.uint8)
    return out


def rgb_to_grey(images: Tensor) -> Tensor:
    """uint8 ``(N, 3, H, W)`` -> uint8 ``(N, 1, H, W)`` luma."""
    w = torch.tensor(LUMA_WEIGHTS).view(1, 3, 1, 1)
    return (images.float() * w).sum(1, keepdim=True).round_().clamp_(0, 255).to(torch.uint8)


def channel_stats(images: Tensor, chunk: int = 4096) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of uint8 images on the [0, 1] scale, rounded to 4 digits."""
    c = images.shape[1]
    total = torch.zeros(c, dtype=torch.float64)
    total_sq = torch.zeros(c, dtype=torch.float64)
    for start in range(0, len(images), chunk):
        x = images[start : start + chunk].to(torch.float64).div_(255.0)
        total += x.sum((0, 2, 3))
        total_sq += x.pow(2).sum((0, 2, 3))
    count = images.numel() // c
    if count == 0:
        raise DataError("cannot compute mean/std of an empty dataset")
    mean = total / count
    std = (total_sq / count - mean.pow(2)).clamp_min(0).sqrt()
    # A constant channel would divide by zero in Normalize.
    std = std.clamp_min(1e-3)
    return tuple(round(float(m), 4) for m in mean), tuple(round(float(s), 4) for s in std)


def stratified_split(labels: Tensor, test_fraction: float, seed: int) -> tuple[Tensor, Tensor]:
    """Deterministic per-class split of example indices into (train, test), each sorted.

    Every class with at least two examples puts ``round(test_fraction * n_c)`` (at least one)
    of them in test, so both splits see every class.
    """
    g = torch.Generator().manual_seed(seed)
    train, test = [], []
    for c in torch.unique(labels).tolist():
        idx = torch.nonzero(labels == c).flatten()
        idx = idx[torch.randperm(len(idx), generator=g)]
        n_test = 0 if len(idx) < 2 else min(len(idx) - 1, max(1, round(test_fraction * len(idx))))
        test.append(idx[:n_test])
        train.append(idx[n_test:])
    return torch.cat(train).sort().values, torch.cat(test).sort().values


def data_roots(data_dir: str | os.PathLike | None) -> list[tuple[str, Path]]:
    """Where to look for a dataset, labelled for error messages.

    An explicit ``data_dir`` is the only place searched, so a typo is an error rather than a
    silent fall back to another copy; otherwise ``$ADVSCALE_DATA`` then the system directory.
    """
    if data_dir is not None:
        return [("--data-dir", Path(data_dir).expanduser())]
    roots = []
    if os.environ.get("ADVSCALE_DATA"):
        roots.append(("$ADVSCALE_DATA", Path(os.environ["ADVSCALE_DATA"]).expanduser()))
    roots.append(("system", SYSTEM_DATA_ROOT))
    return roots


def stratified_order(labels: Tensor, num_classes: int, n: int, seed: int) -> Tensor:
    """Indices of a class-stratified random subset of ``n`` of ``labels``, fixed by ``seed``.

    Round-robin over the classes, each in a random order, keeps the class balance of small
    subsets; the first ``n`` of the same seed's order are always the same examples.
    """
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(len(labels), generator=g)
    lp = labels[perm]
    # Each example's rank among its class in the random order; sorting by (rank, class) deals
    # the classes round-robin without a (classes x examples) table.
    by_label = torch.argsort(lp, stable=True)
    counts = torch.bincount(lp, minlength=num_classes)
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.empty_like(lp)
    rank[by_label] = torch.arange(len(lp)) - starts[lp[by_label]]
    return perm[torch.argsort(rank * num_classes + lp)][:n]


def class_filter(
    name: str, labels: Tensor, class_names: Sequence[str], classes: Sequence[int], relabel: bool
) -> tuple[Tensor, Tensor, list[str], str]:
    """What ``filter_classes(classes, relabel)`` keeps of a dataset called ``name``: the
    indices kept, their labels, the class names and the new name.

    Raises:
        DataError: no class, a repeated class or one out of range; the message names them.
    """
    wanted = [int(c) for c in classes]
    if not wanted:
        raise DataError(f"{name}: filter_classes needs at least one class")
    if len(set(wanted)) != len(wanted):
        raise DataError(f"{name}: filter_classes got repeated classes {wanted}")
    bad = [c for c in wanted if not 0 <= c < len(class_names)]
    if bad:
        raise DataError(
            f"{name}: classes {bad} out of range 0-{len(class_names) - 1} "
            f"({', '.join(class_names)})"
        )
    wanted_t = torch.tensor(wanted, dtype=torch.long)
    keep = torch.nonzero(torch.isin(labels, wanted_t)).flatten()
    tag = f"{name}[{','.join(map(str, wanted))}]"
    if not relabel:
        return keep, labels[keep], list(class_names), tag
    mapping = torch.full((len(class_names),), -1, dtype=torch.long)
    mapping[wanted_t] = torch.arange(len(wanted))
    return keep, mapping[labels[keep]], [class_names[c] for c in wanted], tag
