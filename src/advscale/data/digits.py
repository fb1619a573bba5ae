"""scikit-learn's 8x8 handwritten digits, upscaled to MNIST-like 28x28 grey images."""

from __future__ import annotations

import numpy as np
import torch

from advscale.data.base import (
    DataError,
    ImageDataset,
    channel_stats,
    resize_images,
    stratified_split,
)

CLASSES = [str(d) for d in range(10)]
SPLITS = ("train", "test")
TEST_FRACTION = 0.2
SPLIT_SEED = 0


def load_digits(split: str = "train", image_size: int = 28) -> ImageDataset:
    """The 1,797 digits of ``sklearn.datasets.load_digits`` as a 1-channel uint8 ImageDataset.

    Pixel values 0-16 are scaled to 0-255 and the 8x8 images resized bilinearly to
    ``image_size``. The split is a fixed stratified 80/20 one (1,438 train / 359 test).
    ``mean``/``std`` are those of the training split at this size.

    Raises:
        DataError: scikit-learn is not installed, or ``split`` is unknown.
    """
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r} for digits; allowed: {', '.join(SPLITS)}")
    try:
        from sklearn.datasets import load_digits as sk_load_digits
    except ImportError:
        raise DataError(
            "the digits dataset needs scikit-learn: pip install 'advscale[digits]' "
            "(or pip install scikit-learn)"
        ) from None
    bunch = sk_load_digits()
    # Values are 0..16; 16 -> 255 keeps the full uint8 range.
    small = torch.from_numpy(np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8)).unsqueeze(1)
    labels = torch.from_numpy(bunch.target.astype(np.int64))
    images = resize_images(small, image_size)
    train_idx, test_idx = stratified_split(labels, TEST_FRACTION, SPLIT_SEED)
    mean, std = channel_stats(images[train_idx])
    idx = train_idx if split == "train" else test_idx
    return ImageDataset(
        images[idx], labels[idx], list(CLASSES), name=f"digits/{split}", mean=mean, std=std
    )
