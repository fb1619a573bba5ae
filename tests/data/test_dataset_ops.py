"""ImageDataset operations users build experiments from, and load_dataset's dispatch."""

from __future__ import annotations

import pytest
import torch

from advscale.data import DATASETS, DataError, ImageDataset, load_dataset
from advscale.data.base import channel_stats, stratified_split


def _dataset(n: int = 40, channels: int = 1, size: int = 8) -> ImageDataset:
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, channels, size, size), dtype=torch.uint8, generator=g)
    return ImageDataset(images, torch.arange(n) % 10, [f"c{i}" for i in range(10)], name="toy")


def test_filter_classes_relabels_in_given_order():
    ds = _dataset()
    sub = ds.filter_classes([7, 2, 5])
    assert sub.classes == ["c7", "c2", "c5"] and sub.num_classes == 3
    assert len(sub) == 12 and sub.class_counts() == [4, 4, 4]
    for new, old in enumerate([7, 2, 5]):
        assert torch.equal(sub.images[sub.labels == new], ds.images[ds.labels == old])


def test_filter_classes_without_relabel_keeps_labels():
    ds = _dataset()
    sub = ds.filter_classes([5, 6, 7, 8, 9], relabel=False)
    assert sub.classes == ds.classes and set(sub.labels.tolist()) == {5, 6, 7, 8, 9}


def test_filter_classes_five_and_five_partition_fashion_mnist(fmnist):
    test = fmnist("test")
    first, second = test.filter_classes(range(5)), test.filter_classes(range(5, 10))
    assert len(first) + len(second) == len(test)
    assert first.classes == test.classes[:5] and second.classes == test.classes[5:]
    assert second.labels.max() == 4 and second.class_counts() == [1000] * 5


@pytest.mark.parametrize(
    ("classes", "message"),
    [([], "at least one"), ([1, 1], "repeated"), ([3, 10], r"\[10\] out of range 0-9")],
)
def test_filter_classes_errors(classes, message):
    with pytest.raises(DataError, match=message):
        _dataset().filter_classes(classes)


def test_resize_and_channels():
    ds = _dataset(channels=1, size=8)
    big = ds.resize(16)
    assert big.images.shape == (40, 1, 16, 16) and big.images.dtype == torch.uint8
    assert ds.resize(8) is ds
    constant = ImageDataset(
        torch.full((2, 1, 5, 5), 77, dtype=torch.uint8), torch.zeros(2, dtype=torch.long), ["a"]
    )
    assert (constant.resize((9, 3)).images == 77).all()
    rgb = ds.to_channels(3)
    assert rgb.images.shape[1] == 3 and rgb.mean == ds.mean * 3
    assert torch.equal(rgb.images[:, 2], ds.images[:, 0])
    grey = rgb.to_channels(1)
    assert torch.equal(grey.images, ds.images)  # luma of equal R, G, B is that value
    assert grey.mean[0] == pytest.approx(ds.mean[0], abs=1e-3)
    with pytest.raises(DataError, match="cannot convert 1-channel images to 2"):
        ds.to_channels(2)


def test_default_statistics_broadcast_and_mismatch_is_refused():
    images = torch.zeros(2, 3, 4, 4, dtype=torch.uint8)
    labels = torch.zeros(2, dtype=torch.long)
    assert ImageDataset(images, labels, ["a"]).mean == (0.5, 0.5, 0.5)
    with pytest.raises(DataError, match="one value per channel"):
        ImageDataset(images, labels, ["a"], mean=(0.1, 0.2), std=(0.5,))
    with pytest.raises(DataError, match="labels out of range"):
        ImageDataset(images, torch.tensor([0, 1]), ["a"])
    with pytest.raises(DataError, match="2 images but 3 labels"):
        ImageDataset(images, torch.zeros(3, dtype=torch.long), ["a"])


def test_take_is_stratified_and_seeded():
    ds = _dataset(200)
    a, b = ds.take(50, seed=1), ds.take(50, seed=1)
    assert torch.equal(a.images, b.images)
    assert a.class_counts() == [5] * 10
    assert not torch.equal(ds.take(50, seed=2).images, a.images)


def test_channel_stats_and_stratified_split():
    ds = _dataset(100, channels=3)
    x = ds.images.double() / 255
    mean, std = channel_stats(ds.images)
    assert mean == pytest.approx(x.mean((0, 2, 3)).tolist(), abs=1e-4)
    assert std == pytest.approx(x.std((0, 2, 3), unbiased=False).tolist(), abs=1e-4)
    train, test = stratified_split(ds.labels, 0.2, seed=0)
    assert len(test) == 20 and torch.bincount(ds.labels[test]).tolist() == [2] * 10
    assert set(train.tolist()) | set(test.tolist()) == set(range(100))
    assert torch.equal(stratified_split(ds.labels, 0.2, seed=0)[1], test)


def test_unknown_dataset_lists_the_allowed_names():
    with pytest.raises(
        DataError,
        match="unknown dataset 'mnist'; allowed: fashion-mnist, digits, cifar10, imagefolder",
    ):
        load_dataset("mnist")
    assert set(DATASETS) == {"fashion-mnist", "digits", "cifar10", "imagefolder"}


def test_fashion_mnist_resized_for_bigger_models(fmnist_dir):
    ds = load_dataset("fashion-mnist", "test", fmnist_dir, image_size=32, channels=3)
    assert ds.images.shape == (10000, 3, 32, 32) and ds.mean == (0.2860,) * 3
