"""ImageFolder datasets, read lazily: ``ROOT/CLASS/*.png`` (or .jpg/.jpeg/.bmp).

``ROOT`` may hold ``train/`` and ``test/`` (or ``val/``) subdirectories, each in that layout
(every split must hold the same class folders), or ImageNet's flat validation folder with its
label file (:mod:`advscale.data.folder_index`); without split folders the images are split
80/20 per class with a fixed seed. Class indices follow the sorted class-folder names.

A split is a :class:`FolderDataset`: file names and labels from the cached index, images
decoded only when asked for. ``take(n)`` decodes ``n`` images; ``resize`` and ``to_channels``
only record what decoding will do, so ``image_size: 2240`` resizes the images used, not the
whole split. Training reads it through :class:`advscale.data.stream.StreamLoader`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from advscale.data.augment import Transform, eval_image, train_image
from advscale.data.base import (
    DataError,
    ImageDataset,
    channel_stats,
    class_filter,
    size_pair,
    stratified_order,
    stratified_split,
)
from advscale.data.decode import is_grey, open_image, probe, to_chw
from advscale.data.folder_index import (
    STATS_SAMPLE,
    load_index,
    recall,
    remember,
    split_files,
)

SPLITS = ("train", "test", "val")
# The other names a split may be stored under.
SPLIT_ALIASES = {"train": ("train",), "test": ("test", "val"), "val": ("val", "test")}
TEST_FRACTION = 0.2
SPLIT_SEED = 0
#: Threads decoding a subset in this process (Pillow releases the GIL while decoding).
DECODE_THREADS = min(8, os.cpu_count() or 1)


@dataclass
class FolderDataset:
    """One split of an image folder: files and labels in memory, images decoded on demand.

    Quacks like :class:`~advscale.data.base.ImageDataset` (``labels``, ``classes``,
    ``take``, ``subset``, ``filter_classes``, ``resize``, ``to_channels``, ``images``);
    ``take(n)`` and ``load()`` return a real ImageDataset of the images decoded.
    ``transform`` holds the size and evaluation transform (and, for training, the
    augmentation) applied to each decoded image.
    """

    root: Path
    split: str
    files: np.ndarray
    labels: Tensor
    classes: list[str]
    channels: int
    transform: Transform
    native_size: tuple[int, int]
    first: str
    stats: dict[str, Any] | None = None
    name: str = "imagefolder"

    def __len__(self) -> int:
        return len(self.labels)

    def __repr__(self) -> str:
        h, w = self.image_size
        return (f"FolderDataset({self.name!r}, n={len(self)}, shape={self.channels}x{h}x{w}, "
                f"classes={self.num_classes})")  # fmt: skip

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def image_size(self) -> tuple[int, int]:
        t = self.transform
        if t.size is None and t.eval_resize is not None:  # the centre crop is a square
            return t.eval_resize, t.eval_resize
        return t.size or self.native_size

    def class_counts(self) -> list[int]:
        return torch.bincount(self.labels, minlength=self.num_classes).tolist()

    def path(self, i: int) -> Path:
        return self.root / self.files[i].decode()

    # -- statistics, from the cached index ---------------------------------------------------
    def _stats(self) -> dict[str, Any]:
        if self.stats is None:
            key = f"{self.split}/{self.channels}"
            self.stats = recall(load_index(self.root), "stats", key)
            if self.stats is None:
                self.stats = _measure(self, STATS_SAMPLE)
                remember(self.root, "stats", key, self.stats)
        return self.stats

    @property
    def mean(self) -> tuple[float, ...]:
        return tuple(self._stats()["mean"])

    @property
    def std(self) -> tuple[float, ...]:
        return tuple(self._stats()["std"])

    # -- views (nothing decoded) ----------------------------------------------------------------
    def subset(self, indices: Sequence[int] | Tensor) -> FolderDataset:
        idx = torch.as_tensor(indices, dtype=torch.long)
        return replace(self, files=self.files[idx.numpy()], labels=self.labels[idx])

    def pick(self, n: int | None, seed: int = 0) -> FolderDataset:
        """The class-stratified subset ``take`` would decode, still lazy."""
        if n is None or n >= len(self):
            return self
        return self.subset(stratified_order(self.labels, self.num_classes, n, seed))

    def filter_classes(self, classes: Sequence[int], relabel: bool = True) -> FolderDataset:
        """Only the examples of ``classes``; see :meth:`ImageDataset.filter_classes`."""
        keep, labels, names, tag = class_filter(
            self.name, self.labels, self.classes, classes, relabel
        )
        return replace(self, files=self.files[keep.numpy()], labels=labels, classes=names, name=tag)

    def resize(self, image_size: int | tuple[int, int]) -> FolderDataset:
        """Images resized to ``image_size`` when decoded."""
        return replace(self, transform=replace(self.transform, size=size_pair(image_size)))

    def to_channels(self, channels: int) -> FolderDataset:
        if channels not in (1, 3):
            raise DataError(f"channels must be 1 or 3, got {channels}")
        return self if channels == self.channels else replace(self, channels=channels, stats=None)

    def with_transform(self, transform: Transform) -> FolderDataset:
        return replace(self, transform=transform)

    # -- decoding ----------------------------------------------------------------------------
    def read(self, i: int, epoch: int = 0) -> np.ndarray:
        """Example ``i`` decoded: uint8 ``(C, H, W)``, transformed (and in training augmented
        with the draws of ``(seed, epoch, i)``).

        Raises:
            DataError: the file is unreadable, too large, or (without ``image_size``) of
                another size than the folder's; the message names the file.
        """
        path = self.path(i)
        im = open_image(path, self.channels)
        t = self.transform
        arr = train_image(im, t, epoch, i) if t.random else to_chw(eval_image(im, t))
        if t.size is None and t.eval_resize is None and arr.shape[1:] != self.native_size:
            h, w = arr.shape[1:]
            raise DataError(
                f"{path}: size {h}x{w} differs from the folder's {self.native_size[0]}x"
                f"{self.native_size[1]} ({self.root / self.first}); pass image_size to "
                "resize all images"
            )
        return arr

    def describe(self, key: tuple[int, int]) -> str:
        return str(self.path(key[1]))

    def __getitem__(self, key: tuple[int, int]) -> tuple[np.ndarray, int]:
        """``(epoch, i)`` -> example ``i`` as training reads it in ``epoch``, and its label."""
        epoch, i = key
        return self.read(i, epoch), int(self.labels[i])

    def load(self) -> ImageDataset:
        """Every image of this view decoded, in memory (threads decode in parallel)."""
        if len(self) == 0:
            raise DataError(f"{self.name}: no images to load")
        with ThreadPoolExecutor(DECODE_THREADS) as pool:
            arrays = list(pool.map(self.read, range(len(self))))
        images = torch.from_numpy(np.stack(arrays))
        # Not measured yet: the subset's own statistics rather than decoding a sample for them.
        stats = self.stats
        mean, std = (stats["mean"], stats["std"]) if stats else channel_stats(images)
        return ImageDataset(images, self.labels.clone(), list(self.classes), self.name,
                            tuple(mean), tuple(std))  # fmt: skip

    def take(self, n: int | None, seed: int = 0) -> ImageDataset:
        """A class-stratified random subset of ``n`` examples, decoded (the same examples
        ``ImageDataset.take`` picks)."""
        return self.pick(n, seed).load()

    @property
    def images(self) -> Tensor:
        """All images, decoded now (the whole view in memory: prefer ``take``)."""
        return self.load().images

    def tensors(self, device: str | torch.device = "cpu") -> tuple[Tensor, Tensor]:
        return self.load().tensors(device)


def _measure(ds: FolderDataset, n: int) -> dict[str, Any]:
    """Per-channel mean and std of a class-stratified sample of ``n`` images at their own size."""
    sample = ds.pick(n, seed=SPLIT_SEED)
    total = torch.zeros(ds.channels, dtype=torch.float64)
    total_sq = torch.zeros(ds.channels, dtype=torch.float64)
    count = 0

    def one(i: int) -> np.ndarray | None:
        return _try(lambda p: to_chw(open_image(p, ds.channels)), sample.path(i))

    with ThreadPoolExecutor(DECODE_THREADS) as pool:
        for arr in pool.map(one, range(len(sample))):
            if arr is None:
                continue
            x = torch.tensor(arr, dtype=torch.float64).div_(255.0)
            total += x.sum((1, 2))
            total_sq += x.pow(2).sum((1, 2))
            count += x[0].numel()
    if count == 0:
        raise DataError(f"{ds.name}: no readable image among {len(sample)} sampled for statistics")
    mean = total / count
    std = (total_sq / count - mean.pow(2)).clamp_min(0).sqrt().clamp_min(1e-3)
    return {"mean": [round(float(m), 4) for m in mean], "std": [round(float(s), 4) for s in std],
            "n": len(sample)}  # fmt: skip


def _try(read: Any, path: Path) -> Any:
    try:
        return read(path)
    except DataError:
        return None


def _probe_split(index: dict[str, Any], root: Path, key: str, files: np.ndarray,
                 labels: Tensor, n_classes: int) -> dict[str, Any]:  # fmt: skip
    """Channels (1 when every sampled image is grey) and size of a split, from headers."""
    found = recall(index, "probe", key)
    if found is None:
        order = sorted(stratified_order(labels, n_classes, STATS_SAMPLE, SPLIT_SEED).tolist())
        # An unreadable file is left to training to report (or skip, as data.on_corrupt says).
        modes = {i: m for i in order if (m := _try(probe, root / files[i].decode())) is not None}
        if not modes:
            probe(root / files[order[0]].decode())  # raises, naming the file
        i0 = min(modes)
        found = {"grey": all(is_grey(m[0]) for m in modes.values()), "size": list(modes[i0][1:]),
                 "first": files[i0].decode()}  # fmt: skip
        remember(root, "probe", key, found)
    return found


def load_image_folder(
    root: str | os.PathLike,
    split: str = "train",
    image_size: int | tuple[int, int] | None = None,
    channels: int | None = None,
    eval_resize: int | None = None,
) -> FolderDataset:
    """Split ``split`` of the image folder ``root``, lazily (no image decoded yet).

    Args:
        root: directory of class folders, or of ``train/``, ``test/``/``val/`` split folders.
        split: "train", "test" or "val" ("test" and "val" stand in for each other).
        image_size: resize each image (bilinear) to this size when decoded; without it all
            images must share one size.
        channels: 1 (grey) or 3 (RGB); by default 1 when every image of a class-stratified
            sample of the split is grey, else 3.
        eval_resize: resize the short side to this, then centre-crop ``image_size``.

    ``mean``/``std`` come from a class-stratified sample of the split, cached in the index.

    Raises:
        DataError: missing directory, classes that differ between split folders, empty class
            folder; an unreadable image or mixed sizes when the image is decoded.
    """
    root = Path(root).expanduser()
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r} for imagefolder; allowed: {', '.join(SPLITS)}")
    if not root.is_dir():
        raise DataError(f"{root}: image folder does not exist")
    if channels not in (None, 1, 3):
        raise DataError(f"channels must be 1 or 3, got {channels}")
    root = root.resolve()
    index = load_index(root)
    stored = [s for s in index["splits"] if s != "."]
    if stored:
        key = next((s for s in SPLIT_ALIASES[split] if s in stored), None)
        if key is None:
            raise DataError(f"{root}: has split folders {sorted(stored)} but none for {split!r}")
        files, labels = split_files(index, key)
        y = torch.from_numpy(labels)
    else:
        key = "train" if split == "train" else "test"
        files, labels = split_files(index, ".")
        y = torch.from_numpy(labels)
        train_idx, test_idx = stratified_split(y, TEST_FRACTION, SPLIT_SEED)
        keep = train_idx if split == "train" else test_idx
        if len(keep) == 0:
            raise DataError(
                f"{root}: {len(labels)} images leave none for the {split!r} split (a stratified "
                f"{TEST_FRACTION:.0%} is held out per class); add images or use {root}/train and "
                f"{root}/test folders"
            )
        files, y = files[keep.numpy()], y[keep]
    if len(files) == 0:
        raise DataError(f"{root}: no images found for the {split!r} split")
    classes = list(index["classes"])
    info = _probe_split(index, root, key, files, y, len(classes))
    channels = channels or (1 if info["grey"] else 3)
    size = size_pair(image_size) if image_size is not None else None
    return FolderDataset(
        root=root,
        split=key,
        files=files,
        labels=y,
        classes=classes,
        channels=channels,
        transform=Transform(size=size, eval_resize=eval_resize),
        native_size=tuple(info["size"]),
        first=info["first"],
        stats=recall(index, "stats", f"{key}/{channels}"),
        name=f"imagefolder:{root.name}/{split}",
    )
