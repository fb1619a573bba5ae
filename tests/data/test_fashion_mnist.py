"""Fashion-MNIST: the real files, the search order, and one clear error per kind of bad file."""

from __future__ import annotations

import gzip

import numpy as np
import pytest
import torch
from idx_files import idx_bytes, write_fashion_dir, write_idx_gz

from advscale.data import DataError, find_data_dir, load_dataset, load_fashion_mnist
from advscale.data.base import channel_stats
from advscale.data.fashion_mnist import CLASSES, FILES, MEAN, STD


def test_real_test_split_is_balanced_uint8_28x28(fmnist):
    test = fmnist("test")
    assert test.images.shape == (10000, 1, 28, 28) and test.images.dtype == torch.uint8
    assert test.labels.dtype == torch.int64
    assert test.classes == CLASSES
    assert test.class_counts() == [1000] * 10
    x, y = test.take(64).tensors()
    assert x.dtype == torch.float32 and x.min() >= 0.0 and x.max() <= 1.0
    assert len(set(y.tolist())) == 10


def test_normalization_constants_are_the_training_set_statistics(fmnist):
    train = fmnist("train")
    assert len(train) == 60000
    mean, std = channel_stats(train.images)
    assert mean == pytest.approx(MEAN, abs=1e-3)
    assert std == pytest.approx(STD, abs=1e-3)
    assert train.mean == MEAN and train.std == STD


def test_explicit_data_dir_wins_and_subdirectory_is_found(tmp_path, monkeypatch):
    write_fashion_dir(tmp_path / "mine")
    write_fashion_dir(tmp_path / "env" / "fashion-mnist", n_train=40)
    monkeypatch.setenv("ADVSCALE_DATA", str(tmp_path / "env"))
    assert find_data_dir(tmp_path / "mine") == tmp_path / "mine"
    assert find_data_dir() == tmp_path / "env" / "fashion-mnist"
    assert len(load_dataset("fashion-mnist", "train")) == 40
    ds = load_dataset("fashion-mnist", "test", tmp_path / "mine")
    assert len(ds) == 20 and ds.labels.tolist()[:11] == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0]


def test_explicit_data_dir_never_falls_back_to_another_copy(tmp_path, monkeypatch):
    write_fashion_dir(tmp_path / "env")
    monkeypatch.setenv("ADVSCALE_DATA", str(tmp_path / "env"))
    with pytest.raises(DataError, match="does not exist"):
        find_data_dir(tmp_path / "typo")
    partial = tmp_path / "partial"
    write_fashion_dir(partial)
    (partial / FILES["test"][1]).unlink()
    with pytest.raises(DataError, match=r"missing: t10k-labels-idx1-ubyte\.gz"):
        load_fashion_mnist("test", partial)


def test_nothing_found_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setenv("ADVSCALE_DATA", str(tmp_path))
    monkeypatch.setattr("advscale.data.base.SYSTEM_DATA_ROOT", tmp_path / "nowhere")
    with pytest.raises(DataError, match="apt-get install dataset-fashion-mnist") as e:
        find_data_dir()
    assert "advscale data fetch fashion-mnist" in str(e.value)


def test_unknown_split(tmp_path):
    with pytest.raises(DataError, match="allowed: train, test"):
        load_fashion_mnist("valid", write_fashion_dir(tmp_path))


def _corrupt(d, name, data: bytes):
    (d / name).write_bytes(data)
    return d / name


@pytest.mark.parametrize(
    ("make_bad", "message"),
    [
        (lambda raw: raw[: len(raw) // 2], "corrupt or truncated gzip"),
        (lambda raw: b"this is not gzip at all" + raw, "corrupt or truncated gzip"),
        (
            lambda raw: raw[:10] + bytes(b ^ 0xFF for b in raw[10:40]) + raw[40:],
            "corrupt or truncated gzip",
        ),
    ],
    ids=["truncated", "not-gzip", "flipped-bytes"],
)
def test_broken_gzip_names_the_file(tmp_path, make_bad, message):
    d = write_fashion_dir(tmp_path)
    path = d / FILES["test"][0]
    path.write_bytes(make_bad(path.read_bytes()))
    with pytest.raises(DataError, match=message) as e:
        load_fashion_mnist("test", d)
    assert str(path) in str(e.value)


def test_wrong_magic_number(tmp_path):
    d = write_fashion_dir(tmp_path)
    path = write_idx_gz(
        d / FILES["test"][0], np.zeros((20, 28, 28), np.uint8), magic=b"\x00\x00\x0d\x03"
    )
    with pytest.raises(DataError, match="wrong IDX magic number 0x00000d03") as e:
        load_fashion_mnist("test", d)
    assert str(path) in str(e.value)


def test_labels_file_with_image_dimensions(tmp_path):
    d = write_fashion_dir(tmp_path)
    write_idx_gz(d / FILES["test"][1], np.zeros((20, 28, 28), np.uint8))
    with pytest.raises(DataError, match="has 3 dimensions, expected 1"):
        load_fashion_mnist("test", d)


def test_wrong_image_shape(tmp_path):
    d = write_fashion_dir(tmp_path)
    path = write_idx_gz(d / FILES["test"][0], np.zeros((20, 32, 32), np.uint8))
    with pytest.raises(DataError, match="32x32, expected 28x28") as e:
        load_fashion_mnist("test", d)
    assert str(path) in str(e.value)


def test_header_and_payload_disagree(tmp_path):
    d = write_fashion_dir(tmp_path)
    path = d / FILES["test"][0]
    raw = idx_bytes(np.zeros((20, 28, 28), np.uint8))
    path.write_bytes(gzip.compress(raw[:-100]))
    with pytest.raises(DataError, match=r"header says shape \(20, 28, 28\)"):
        load_fashion_mnist("test", d)


def test_labels_out_of_range(tmp_path):
    d = write_fashion_dir(tmp_path)
    path = write_idx_gz(d / FILES["test"][1], np.full(20, 10, np.uint8))
    with pytest.raises(DataError, match="label 10 out of range 0-9") as e:
        load_fashion_mnist("test", d)
    assert str(path) in str(e.value)


def test_image_and_label_counts_differ(tmp_path):
    d = write_fashion_dir(tmp_path)
    write_idx_gz(d / FILES["test"][1], np.zeros(19, np.uint8))
    with pytest.raises(DataError, match="20 images but .* 19 labels"):
        load_fashion_mnist("test", d)
