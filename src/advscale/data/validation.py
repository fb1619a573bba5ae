"""The validation split a data description names, in memory: one answer for training and sweeps."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from advscale.data.base import DataError, ImageDataset
from advscale.data.imagefolder import FolderDataset
from advscale.data.registry import DATASETS, load_dataset, sized
from advscale.data.webdataset import load_shards


class DataSpec(Protocol):
    """What :func:`build_val` reads of a ``data:`` description (``advscale.train.config.DataConfig``)."""

    name: str
    data_dir: str | None
    val_dir: str | None
    val_split: str
    n_val: int | None
    classes: list[int] | None
    image_size: int | None
    channels: int | None
    num_classes: int | None
    mean: list[float] | None
    std: list[float] | None
    eval_resize: int | None


def check_dataset_name(name: str) -> None:
    """Raise DataError naming ``data.name`` when it is neither a dataset nor ``webdataset``."""
    if name != "webdataset" and name not in DATASETS:
        raise DataError(
            f"data.name {name!r} unknown; allowed: {', '.join((*DATASETS, 'webdataset'))}"
        )


def select(
    ds: ImageDataset | FolderDataset, classes: Sequence[int] | None, n: int | None, seed: int
) -> ImageDataset:
    """Keep ``classes`` (relabelled 0..k-1) and a class-stratified subset of ``n``, fixed by
    ``seed``, in memory (of an image folder, only those images are decoded)."""
    if classes is not None:
        ds = ds.filter_classes(list(classes))
    return ds.take(n, seed=seed)


def build_val(spec: DataSpec, seed: int = 0) -> ImageDataset:
    """The validation set ``spec`` describes, in memory.

    ``n_val`` examples of ``val_split`` (class-stratified, fixed by ``seed``: the same subset
    training gives a run with that seed), or for ``name: webdataset`` a class-stratified
    draw of ``n_val`` examples of the ``val_dir`` shards (only those decoded).

    Raises:
        DataError: unknown name, missing ``val_dir``, unreadable data.
    """
    check_dataset_name(spec.name)
    if spec.name == "webdataset":
        if not spec.val_dir:
            raise DataError(
                "data.val_dir is required for data.name: webdataset (validation shards, read into memory)"
            )
        if spec.classes is not None:
            raise DataError(
                "data.classes is not supported with data.name: webdataset; write shards of the classes wanted"
            )
        val = load_shards(
            spec.val_dir,
            spec.n_val,
            num_classes=spec.num_classes,
            mean=spec.mean,
            std=spec.std,
            seed=seed + 1,
        )
        return sized(val, spec.image_size, getattr(spec, "eval_resize", None))
    ds = load_dataset(
        spec.name,
        spec.val_split,
        spec.data_dir,
        image_size=spec.image_size,
        channels=spec.channels,
        eval_resize=getattr(spec, "eval_resize", None),
        classes=spec.classes,
        n=spec.n_val,
        seed=seed + 1,
    )
    return ds.load() if isinstance(ds, FolderDataset) else ds
