"""The datasets a training config names: in memory (ImageDataset) or streamed (WebDataset shards)."""

from __future__ import annotations

from dataclasses import dataclass

from advscale.data import DATASETS, ImageDataset, load_dataset
from advscale.errors import UserError
from advscale.train.config import DataConfig
from advscale.train.webdataset import list_shards, load_shards


@dataclass
class TrainData:
    """Training source, validation set and what a model needs to know about them.

    ``train`` is an ImageDataset, or a list of shard paths for ``name: webdataset``.
    """

    train: ImageDataset | list
    val: ImageDataset
    num_classes: int
    channels: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    classes: list[str]

    @property
    def streamed(self) -> bool:
        return not isinstance(self.train, ImageDataset)


def _select(ds: ImageDataset, cfg: DataConfig, n: int | None, seed: int) -> ImageDataset:
    if cfg.classes is not None:
        ds = ds.filter_classes(cfg.classes)
    return ds.take(n, seed=seed)


def _check_name(cfg: DataConfig) -> None:
    if cfg.name != "webdataset" and cfg.name not in DATASETS:
        raise UserError(
            f"data.name {cfg.name!r} unknown; allowed: {', '.join((*DATASETS, 'webdataset'))}"
        )


def build_val(cfg: DataConfig, seed: int = 0) -> ImageDataset:
    """The validation set ``data:`` describes, in memory.

    ``n_val`` examples of ``val_split`` (class-stratified, fixed by ``seed``: the same subset
    :func:`build_data` gives a run with that seed), or for ``name: webdataset`` the first
    ``n_val`` examples of the ``val_dir`` shards.
    """
    _check_name(cfg)
    if cfg.name == "webdataset":
        if not cfg.val_dir:
            raise UserError(
                "data.val_dir is required for data.name: webdataset (validation shards, read into memory)"
            )
        if cfg.classes is not None:
            raise UserError(
                "data.classes is not supported with data.name: webdataset; write shards of the classes wanted"
            )
        val = load_shards(
            cfg.val_dir, cfg.n_val, num_classes=cfg.num_classes, mean=cfg.mean, std=cfg.std
        )
        return val.resize(cfg.image_size) if cfg.image_size is not None else val
    ds = load_dataset(
        cfg.name, cfg.val_split, cfg.data_dir, image_size=cfg.image_size, channels=cfg.channels
    )
    return _select(ds, cfg, cfg.n_val, seed + 1)


def build_data(cfg: DataConfig, seed: int = 0) -> TrainData:
    """Load what ``data:`` describes. Subsets are class-stratified and fixed by ``seed``."""
    _check_name(cfg)
    if cfg.name == "webdataset":
        if not cfg.data_dir:
            raise UserError(
                "data.data_dir is required for data.name: webdataset (a directory or glob of .tar shards)"
            )
        shards = list_shards(cfg.data_dir)
        val = build_val(cfg, seed)
        k = cfg.num_classes or val.num_classes
        return TrainData(shards, val, k, val.channels, tuple(val.mean), tuple(val.std), val.classes)
    kw = {"image_size": cfg.image_size, "channels": cfg.channels}
    train = _select(
        load_dataset(cfg.name, cfg.train_split, cfg.data_dir, **kw), cfg, cfg.n_train, seed
    )
    val = build_val(cfg, seed)
    mean = tuple(cfg.mean) if cfg.mean else tuple(train.mean)
    std = tuple(cfg.std) if cfg.std else tuple(train.std)
    return TrainData(train, val, train.num_classes, train.channels, mean, std, list(train.classes))
