"""The training data a config names: in memory (ImageDataset) or streamed (an image folder,
WebDataset shards).

Dataset readers and the validation split live in :mod:`advscale.data`; this module only puts
together what one training run needs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from advscale.data import (
    FolderDataset,
    ImageDataset,
    Transform,
    build_val,
    check_dataset_name,
    list_shards,
    load_dataset,
)
from advscale.errors import UserError
from advscale.train.config import DataConfig


@dataclass
class TrainData:
    """Training source, validation set and what a model needs to know about them.

    ``train`` is an ImageDataset (in memory), a FolderDataset (an image folder, decoded as
    training reads it) or a list of shard paths for ``name: webdataset``.
    """

    train: ImageDataset | FolderDataset | list
    val: ImageDataset
    num_classes: int
    channels: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    classes: list[str]

    @property
    def streamed(self) -> bool:
        return not isinstance(self.train, ImageDataset)

    def model_meta(self, cfg: DataConfig) -> dict[str, Any]:
        """What a saved model records about its data, so that ``advscale export`` and
        ``advscale eval`` find test images of the right kind without being told: ``dataset``,
        ``data_dir``, ``input_shape`` (C, H, W) and, when resized or converted, ``image_size``
        and ``channels``."""
        return {
            "dataset": cfg.name,
            "data_dir": cfg.data_dir,
            "input_shape": list(self.val.images.shape[1:]),
            "image_size": cfg.image_size,
            "channels": cfg.channels,
        }


def transform_of(cfg: DataConfig, seed: int) -> Transform:
    """The per-image transform and augmentation ``data:`` asks for, drawing from ``seed``."""
    size = (cfg.image_size, cfg.image_size) if cfg.image_size is not None else None
    return Transform(size=size, eval_resize=cfg.eval_resize, augment=cfg.augment,
                     padding=cfg.crop_padding, scale=tuple(cfg.rrc_scale),
                     ratio=tuple(cfg.rrc_ratio), seed=seed)  # fmt: skip


def build_data(cfg: DataConfig, seed: int = 0) -> TrainData:
    """Load what ``data:`` describes. Subsets are class-stratified and fixed by ``seed``.

    An image folder's training split stays on disk (its index in memory); the validation set
    (``n_val`` examples) is decoded into memory.
    """
    check_dataset_name(cfg.name)
    if cfg.name == "webdataset":
        if not cfg.data_dir:
            raise UserError(
                "data.data_dir is required for data.name: webdataset (a directory or glob of .tar shards)"
            )
        shards = list_shards(cfg.data_dir)
        val = build_val(cfg, seed)
        k = cfg.num_classes or val.num_classes
        return TrainData(shards, val, k, val.channels, tuple(val.mean), tuple(val.std), val.classes)
    kw = {"image_size": cfg.image_size, "channels": cfg.channels, "eval_resize": cfg.eval_resize}
    train: ImageDataset | FolderDataset
    if cfg.name == "imagefolder":
        train = load_dataset(cfg.name, cfg.train_split, cfg.data_dir, classes=cfg.classes, **kw)
        train = train.pick(cfg.n_train, seed)  # type: ignore[union-attr]
    else:  # the subset first, then resized
        train = load_dataset(cfg.name, cfg.train_split, cfg.data_dir, classes=cfg.classes,
                             n=cfg.n_train, seed=seed, **kw)  # fmt: skip
    val = build_val(cfg, seed)
    # The whole training split's statistics: subsets keep them; an image folder's come from
    # its index.
    mean = tuple(cfg.mean) if cfg.mean else tuple(train.mean)
    std = tuple(cfg.std) if cfg.std else tuple(train.std)
    return TrainData(train, val, train.num_classes, train.channels, mean, std, list(train.classes))
