"""Image classification datasets laid out as ``root/class_name/*.png`` (ImageFolder layout).

``root`` may hold ``train/`` and ``test/`` (or ``val/``) subdirectories, each in that layout;
without them the images are split 80/20 per class with a fixed seed. Class indices follow the
sorted class-folder names over all splits, so they agree between train and test.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from advscale.data.base import DataError, ImageDataset, channel_stats, stratified_split

EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp")
SPLITS = ("train", "test", "val")
# The other names a split may be stored under.
SPLIT_ALIASES = {"train": ("train",), "test": ("test", "val"), "val": ("val", "test")}
TEST_FRACTION = 0.2
SPLIT_SEED = 0
GREY_MODES = ("1", "L", "LA", "I", "I;16", "F")


def _class_dirs(d: Path) -> list[Path]:
    return sorted(p for p in d.iterdir() if p.is_dir() and not p.name.startswith("."))


def _image_files(d: Path) -> list[Path]:
    return sorted(
        p
        for p in d.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in EXTENSIONS
    )


def _split_dirs(root: Path) -> dict[str, Path]:
    return {s: root / s for s in SPLITS if (root / s).is_dir()}


def _read_image(path: Path, size: tuple[int, int] | None, mode: str) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im = im.convert(mode)
            if size is not None and im.size != (size[1], size[0]):
                im = im.resize((size[1], size[0]), Image.Resampling.BILINEAR)
            arr = np.asarray(im, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise DataError(f"{path}: cannot read image ({e})") from None
    return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)


def _is_grey(path: Path) -> bool:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return im.mode in GREY_MODES
    except (UnidentifiedImageError, OSError) as e:
        raise DataError(f"{path}: cannot read image ({e})") from None


def load_image_folder(
    root: str | os.PathLike,
    split: str = "train",
    image_size: int | tuple[int, int] | None = None,
    channels: int | None = None,
) -> ImageDataset:
    """Read ``split`` of the image folder ``root`` into a uint8 ImageDataset.

    Args:
        root: directory of class folders, or of ``train/``, ``test/``/``val/`` split folders.
        split: "train", "test" or "val" ("test" and "val" stand in for each other).
        image_size: resize every image (bilinear) to this size; without it all images must
            already share one size.
        channels: 1 (grey) or 3 (RGB); by default 1 when every image is grey, else 3.

    ``mean``/``std`` are computed from the images of the split loaded; build the model with
    the training split's values.

    Raises:
        DataError: missing directory, empty class folder, unreadable image or mixed sizes.
    """
    root = Path(root).expanduser()
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r} for imagefolder; allowed: {', '.join(SPLITS)}")
    if not root.is_dir():
        raise DataError(f"{root}: image folder does not exist")
    if channels not in (None, 1, 3):
        raise DataError(f"channels must be 1 or 3, got {channels}")
    if isinstance(image_size, int):
        image_size = (image_size, image_size)

    split_dirs = _split_dirs(root)
    if split_dirs:
        src = next((split_dirs[s] for s in SPLIT_ALIASES[split] if s in split_dirs), None)
        if src is None:
            raise DataError(
                f"{root}: has split folders {sorted(split_dirs)} but none for {split!r}"
            )
        class_names = sorted({p.name for d in split_dirs.values() for p in _class_dirs(d)})
    else:
        src = root
        class_names = [p.name for p in _class_dirs(root)]
    if not class_names:
        raise DataError(f"{root}: no class folders (expected {root}/CLASS_NAME/*.png)")

    files: list[Path] = []
    labels: list[int] = []
    for label, name in enumerate(class_names):
        d = src / name
        if not d.is_dir():
            continue  # a class absent from this split
        found = _image_files(d)
        if not found:
            raise DataError(f"{d}: class folder has no images ({', '.join(EXTENSIONS)})")
        files += found
        labels += [label] * len(found)
    if not files:
        raise DataError(f"{src}: no images found")

    y = torch.tensor(labels, dtype=torch.long)
    if not split_dirs:
        train_idx, test_idx = stratified_split(y, TEST_FRACTION, SPLIT_SEED)
        keep = (train_idx if split == "train" else test_idx).tolist()
        files, y = [files[i] for i in keep], y[keep]
        if not files:
            raise DataError(
                f"{root}: {len(labels)} images leave none for the {split!r} split (a stratified "
                f"{TEST_FRACTION:.0%} is held out per class); add images or use {root}/train and "
                f"{root}/test folders"
            )

    if channels is None:
        channels = 1 if all(_is_grey(f) for f in files) else 3
    mode = "L" if channels == 1 else "RGB"
    arrays = [_read_image(f, image_size, mode) for f in files]
    first = arrays[0].shape
    odd = next((i for i, a in enumerate(arrays) if a.shape != first), None)
    if odd is not None:
        h, w = arrays[odd].shape[1:]
        raise DataError(
            f"{files[odd]}: size {h}x{w} differs from {files[0]} ({first[1]}x{first[2]}); "
            "pass image_size to resize all images"
        )
    images = torch.from_numpy(np.stack(arrays))
    mean, std = channel_stats(images)
    return ImageDataset(
        images, y, class_names, name=f"imagefolder:{root.name}/{split}", mean=mean, std=std
    )
