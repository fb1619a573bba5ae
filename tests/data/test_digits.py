"""scikit-learn digits upscaled to 28x28: content kept, split fixed and stratified."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from advscale.data import DataError, dataset_info, load_dataset

sklearn_datasets = pytest.importorskip("sklearn.datasets")


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", "train"), load_dataset("digits", "test")


def test_shapes_classes_and_split(digits):
    train, test = digits
    assert train.images.shape[1:] == (1, 28, 28) and train.images.dtype == torch.uint8
    assert train.classes == [str(d) for d in range(10)]
    assert len(train) + len(test) == 1797
    assert 0.19 < len(test) / 1797 < 0.21
    # Stratified: every class keeps its share in both splits.
    for c, (n_train, n_test) in enumerate(
        zip(train.class_counts(), test.class_counts(), strict=True)
    ):
        assert abs(n_test / (n_train + n_test) - 0.2) < 0.02, c
    assert int(train.images.max()) == 255 and int(train.images.min()) == 0


def test_split_is_deterministic_and_disjoint(digits):
    train, test = digits
    again = load_dataset("digits", "train")
    assert torch.equal(again.images, train.images) and torch.equal(again.labels, train.labels)
    # The 1,797 originals are all distinct, so no test image may appear among training images.
    seen = {bytes(x.flatten().tolist()) for x in train.images}
    assert not any(bytes(x.flatten().tolist()) in seen for x in test.images)


def test_upscaled_images_match_bilinear_resize_of_the_originals(digits):
    """Pillow's bilinear resize of the 0-255 scaled 8x8 originals is the oracle."""
    from PIL import Image

    train, _ = digits
    bunch = sklearn_datasets.load_digits()
    originals = np.rint(bunch.images * (255 / 16)).astype(np.float32)
    refs = torch.from_numpy(
        np.stack(
            [
                np.asarray(Image.fromarray(o, mode="F").resize((28, 28), Image.Resampling.BILINEAR))
                for o in originals
            ]
        )
    ).flatten(1)
    targets = torch.from_numpy(bunch.target)
    for img, label in zip(train.images[:20], train.labels[:20], strict=True):
        worst = (refs - img.flatten().float()).abs().max(1).values
        j = int(worst.argmin())
        assert worst[j] <= 1.0 and targets[j] == label


def test_image_size_and_channels(digits):
    small = load_dataset("digits", "test", image_size=16, channels=3)
    assert small.images.shape[1:] == (3, 16, 16) and len(small) == len(digits[1])
    assert len(small.mean) == 3


def test_mean_std_from_training_split(digits):
    train, test = digits
    x = train.images.double() / 255
    assert train.mean[0] == pytest.approx(x.mean().item(), abs=1e-4)
    assert train.std[0] == pytest.approx(x.std(unbiased=False).item(), abs=1e-4)
    assert test.mean == train.mean


def test_missing_scikit_learn_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(DataError, match=r"needs scikit-learn: pip install 'advscale\[digits\]'"):
        load_dataset("digits", "train")


def test_info():
    info = dataset_info("digits")
    assert info["image_size"] == [28, 28] and info["num_classes"] == 10
    assert info["splits"]["train"]["size"] + info["splits"]["test"]["size"] == 1797
