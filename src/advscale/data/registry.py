"""Datasets by name: ``load_dataset(name, split)`` and what it would give (``dataset_info``)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from advscale.data.augment import Transform, resize_short_crop
from advscale.data.base import DataError, ImageDataset, size_pair
from advscale.data.cifar import find_cifar_dir, load_cifar10
from advscale.data.digits import load_digits
from advscale.data.fashion_mnist import find_data_dir, load_fashion_mnist
from advscale.data.imagefolder import FolderDataset, load_image_folder

DATASETS = ("fashion-mnist", "digits", "cifar10", "imagefolder")
SPLITS = {
    "fashion-mnist": ("train", "test"),
    "digits": ("train", "test"),
    "cifar10": ("train", "test"),
    "imagefolder": ("train", "test"),
}


def load_dataset(
    name: str,
    split: str = "train",
    data_dir: str | os.PathLike | None = None,
    *,
    image_size: int | tuple[int, int] | None = None,
    channels: int | None = None,
    eval_resize: int | None = None,
    classes: Sequence[int] | None = None,
    n: int | None = None,
    seed: int = 0,
) -> ImageDataset | FolderDataset:
    """Load split ``split`` of dataset ``name`` (one of ``DATASETS``) as a uint8 ImageDataset.

    Args:
        name: "fashion-mnist" (1x28x28), "digits" (scikit-learn's, upscaled to 1x28x28),
            "cifar10" (3x32x32) or "imagefolder" (``data_dir/CLASS/*.png``).
        split: "train" or "test" ("val" is accepted for imagefolder).
        data_dir: where the files are; searched by default in ``$ADVSCALE_DATA`` and
            ``/usr/share/datasets``. Required for "imagefolder".
        image_size: resize images (bilinear) to this size.
        channels: convert to 1 (grey) or 3 (RGB) channels.
        eval_resize: resize the short side to this, then centre-crop ``image_size`` (the
            evaluation transform of ImageNet models, e.g. 256 -> 224) instead of resizing.
        classes: keep only these classes (label indices, relabelled ``0..k-1``).
        n: a class-stratified subset of ``n`` examples fixed by ``seed`` (``take``), taken
            before any image is resized, so a large ``image_size`` costs ``n`` images.

    Without ``n``, "imagefolder" gives a :class:`FolderDataset`: nothing is decoded until
    ``take(n)`` (decodes ``n`` images) or ``load()``; the others are read into memory.

    Raises:
        DataError: unknown name or split, missing or malformed files.
    """
    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; allowed: {', '.join(DATASETS)}")
    if channels not in (None, 1, 3):
        raise DataError(f"channels must be 1 or 3, got {channels}")
    if name == "imagefolder":
        if data_dir is None:
            raise DataError(
                "dataset 'imagefolder' needs data_dir (--data-dir ROOT with ROOT/CLASS/*.png)"
            )
        folder = load_image_folder(
            data_dir, split, image_size=image_size, channels=channels, eval_resize=eval_resize
        )
        if classes is not None:
            folder = folder.filter_classes(list(classes))
        return folder if n is None else folder.take(n, seed=seed)
    if name == "fashion-mnist":
        ds = load_fashion_mnist(split, data_dir)
    elif name == "digits":
        ds = load_digits(split, image_size=image_size or 28)
    else:
        ds = load_cifar10(split, data_dir)
    if classes is not None:
        ds = ds.filter_classes(list(classes))
    ds = sized(ds.take(n, seed=seed), image_size, eval_resize)
    if channels is not None:
        ds = ds.to_channels(channels)
    return ds


def sized(
    ds: ImageDataset, image_size: int | tuple[int, int] | None, eval_resize: int | None
) -> ImageDataset:
    """``ds`` resized to ``image_size``, or with the short side resized to ``eval_resize`` and
    centre-cropped to ``image_size``."""
    if eval_resize is not None:
        size = size_pair(image_size) if image_size is not None else None
        Transform(size, eval_resize)  # checks that the crop fits
        return ds.with_fields(images=resize_short_crop(ds.images, eval_resize, size))
    return ds.resize(image_size) if image_size is not None else ds


def dataset_info(name: str, data_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """What ``load_dataset(name, ..., data_dir)`` would give, as JSON-ready data.

    Returns a dict with ``name``, ``location``, ``classes``, ``num_classes``, ``channels``,
    ``image_size`` ([H, W]), ``mean``, ``std`` (of the training split) and ``splits``
    (per split: ``size`` and ``class_counts``).
    """
    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; allowed: {', '.join(DATASETS)}")
    if name == "fashion-mnist":
        location = str(find_data_dir(data_dir))
    elif name == "cifar10":
        location = str(find_cifar_dir(data_dir))
    elif name == "digits":
        location = "scikit-learn (sklearn.datasets.load_digits)"
    else:
        location = str(Path(data_dir).expanduser()) if data_dir is not None else None
    # An image folder answers from its index: only the statistics sample is ever decoded.
    splits = {s: load_dataset(name, s, data_dir) for s in SPLITS[name]}
    train = splits["train"]
    return {
        "name": name,
        "location": location,
        "classes": list(train.classes),
        "num_classes": train.num_classes,
        "channels": train.channels,
        "image_size": list(train.image_size),
        "mean": list(train.mean),
        "std": list(train.std),
        "splits": {
            s: {"size": len(ds), "class_counts": ds.class_counts()} for s, ds in splits.items()
        },
    }
