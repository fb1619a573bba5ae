"""Every dataset reader, served as float [0, 1] batches.

Fashion-MNIST, scikit-learn digits and CIFAR-10 by name, in memory as uint8
(:func:`load_dataset`, batches by :class:`BatchLoader`, augmented on the device); image
folders by name, read lazily from a cached index (:class:`FolderDataset`: ``take(n)`` decodes
``n`` images); WebDataset tar shards, streamed (:class:`ShardLoader`) or read into memory
(:func:`load_shards`). Streamed data is decoded and augmented in worker processes
(:mod:`advscale.data.stream`), with draws fixed by (seed, epoch, example index)
(:mod:`advscale.data.augment`). Also the validation split a ``data:`` config names
(:func:`build_val`) and the check that a dataset's class order is the model's
(:func:`check_class_order`).

Example:
    >>> from advscale.data import BatchLoader, load_dataset
    >>> train = load_dataset("fashion-mnist", "train")  # doctest: +SKIP
    >>> pretrain = train.filter_classes([0, 1, 2, 3, 4])  # doctest: +SKIP
    >>> for x, y in BatchLoader(pretrain, 128, seed=0): ...  # doctest: +SKIP
"""

from advscale.data.augment import AUGMENTS, Transform
from advscale.data.base import DataError, ImageDataset, to_float
from advscale.data.cifar import find_cifar_dir, load_cifar10
from advscale.data.classes import check_class_order
from advscale.data.digits import load_digits
from advscale.data.fashion_mnist import find_data_dir, load_fashion_mnist
from advscale.data.fetch import fetch_dataset
from advscale.data.imagefolder import FolderDataset, load_image_folder
from advscale.data.loaders import BatchLoader
from advscale.data.registry import DATASETS, SPLITS, dataset_info, load_dataset
from advscale.data.shard_stream import ShardLoader
from advscale.data.validation import DataSpec, build_val, check_dataset_name, select
from advscale.data.webdataset import list_shards, load_shards, write_shards

__all__ = [
    "AUGMENTS",
    "FolderDataset",
    "Transform",
    "DATASETS",
    "SPLITS",
    "DataSpec",
    "ShardLoader",
    "build_val",
    "check_dataset_name",
    "list_shards",
    "load_shards",
    "select",
    "write_shards",
    "BatchLoader",
    "DataError",
    "check_class_order",
    "ImageDataset",
    "dataset_info",
    "fetch_dataset",
    "find_cifar_dir",
    "find_data_dir",
    "load_cifar10",
    "load_dataset",
    "load_digits",
    "load_fashion_mnist",
    "load_image_folder",
    "to_float",
]
