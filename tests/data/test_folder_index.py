"""Image folders at scale: a cached index instead of decoding each start, only the images asked
for decoded, bounded reading of each file, ImageNet's validation layout."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from advscale.data import DataError, dataset_info, load_dataset
from advscale.data.folder_index import INDEX_NAME, load_index, split_files


def _folder(root: Path, per_class=10, classes=("a", "b", "c"), size=(9, 11)) -> list[Path]:
    rng = np.random.default_rng(1)
    files = []
    for c in classes:
        (root / c).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            arr = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
            Image.fromarray(arr).save(root / c / f"{i}.png")
            files.append(root / c / f"{i}.png")
    return files


def _break(files: list[Path], keep: set[Path] = frozenset()) -> None:
    """Overwrite files in place (their folders' times do not change): decoding them fails."""
    for f in files:
        if f not in keep:
            f.write_bytes(b"\x89PNG\r\n\x1a\n broken")


def test_a_second_start_reads_the_index_and_decodes_nothing(tmp_path):
    files = _folder(tmp_path / "d")
    first = dataset_info("imagefolder", tmp_path / "d")  # lists, probes, measures statistics
    assert (tmp_path / "d" / INDEX_NAME).is_file()
    _break(files)
    again = dataset_info("imagefolder", tmp_path / "d")
    assert again == first and again["splits"]["train"]["size"] == 24


def test_the_index_is_rebuilt_when_files_come_or_go(tmp_path):
    _folder(tmp_path / "d")
    assert len(load_dataset("imagefolder", "train", tmp_path / "d")) == 24
    for i in range(10, 15):
        Image.new("RGB", (11, 9)).save(tmp_path / "d" / "a" / f"{i}.png")
    assert load_dataset("imagefolder", "train", tmp_path / "d").class_counts() == [12, 8, 8]


def test_an_unwritable_data_folder_keeps_its_index_in_the_cache(tmp_path, monkeypatch):
    _folder(tmp_path / "d")
    (tmp_path / "d" / INDEX_NAME).mkdir()  # the index cannot be written there
    monkeypatch.setenv("ADVSCALE_CACHE", str(tmp_path / "cache"))
    ds = load_dataset("imagefolder", "train", tmp_path / "d")
    cached = list((tmp_path / "cache" / "index").glob("*.json"))
    assert len(cached) == 1 and len(ds) == 24 and len(ds.mean) == 3


def test_taking_n_decodes_those_n_only_and_sizes_them_after_the_subset(tmp_path):
    files = _folder(tmp_path / "d", per_class=20)
    ds = load_dataset("imagefolder", "test", tmp_path / "d", image_size=2240)
    chosen = ds.pick(3, seed=0)
    _break(files, keep={chosen.path(i) for i in range(3)})
    x = ds.take(3, seed=0)
    # 3 images at 2240x2240 (45 MB), not the split: every other file is unreadable.
    assert x.images.shape == (3, 3, 2240, 2240) and x.class_counts() == [1, 1, 1]


@pytest.mark.parametrize(("side", "shown"), [(30000, "900000000"), (9500, "9500x9500")])
def test_a_huge_image_is_refused_from_its_header_in_one_line(tmp_path, side, shown):
    _folder(tmp_path / "d", per_class=2)
    # A valid PNG header announcing side x side pixels; decoding 30000^2 would need 2.7 GB.
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    png = b"\x89PNG\r\n\x1a\n" + b"".join(
        struct.pack(">I", len(body) - 4) + body + struct.pack(">I", zlib.crc32(body))
        for body in (b"IHDR" + ihdr, b"IDAT" + zlib.compress(b"\0" * 64), b"IEND")
    )
    (tmp_path / "d" / "b" / "huge.png").write_bytes(png)
    ds = load_dataset("imagefolder", "train", tmp_path / "d")
    with pytest.raises(DataError) as e:
        ds.load()
    msg = str(e.value)
    assert f"huge.png: image of {shown} pixels is over the limit" in msg and "\n" not in msg


def test_16_bit_images_are_read_by_their_range(tmp_path):
    rng = np.random.default_rng(0)
    grey8 = rng.integers(0, 256, (3, 6, 7), dtype=np.uint8)
    for k, img in enumerate(grey8):
        for depth, root in ((8, tmp_path / "g8"), (16, tmp_path / "g16")):
            (root / "x").mkdir(parents=True, exist_ok=True)
            arr = img if depth == 8 else img.astype(np.uint16) * 257  # 255 -> 65535
            Image.fromarray(arr).save(root / "x" / f"{k}.png")
            (root / "y").mkdir(exist_ok=True)
            Image.fromarray(arr).save(root / "y" / f"{k}.png")
    a = load_dataset("imagefolder", "train", tmp_path / "g8").load()
    b = load_dataset("imagefolder", "train", tmp_path / "g16").load()
    assert Image.open(tmp_path / "g16" / "x" / "0.png").mode.startswith("I")
    assert b.channels == 1 and torch.equal(a.images, b.images)


def test_imagenet_flat_validation_folder_with_its_solution_file(tmp_path):
    _folder(tmp_path / "train", per_class=2, classes=("n01", "n02"))
    (tmp_path / "val").mkdir()
    rows = ["ImageId,PredictionString"]
    for i, wnid in enumerate(["n02", "n01", "n02"]):
        Image.new("RGB", (11, 9), (i * 50, 0, 0)).save(tmp_path / "val" / f"v_{i}.JPEG")
        rows.append(f"v_{i},{wnid} 1 2 3 4")
    (tmp_path / "LOC_val_solution.csv").write_text("\n".join(rows) + "\n")
    (tmp_path / "test").mkdir()  # ImageNet's test images have no labels
    Image.new("RGB", (11, 9)).save(tmp_path / "test" / "t.JPEG")
    val = load_dataset("imagefolder", "val", tmp_path)
    assert val.classes == ["n01", "n02"] and val.labels.tolist() == [1, 0, 1]
    assert val.load().images[:, 0, 0, 0].tolist() == [0, 50, 100]
    with pytest.raises(DataError, match=r"test: images without class folders and no label file"):
        load_dataset("imagefolder", "test", tmp_path)


def test_index_lists_without_decoding(tmp_path):
    files = _folder(tmp_path / "d", per_class=3)
    _break(files)  # listing needs no pixel
    index = load_index(tmp_path / "d")
    files, labels = split_files(index, ".")
    assert index["classes"] == ["a", "b", "c"] and labels.tolist() == [0] * 3 + [1] * 3 + [2] * 3
    assert files[3] == b"b/0.png" and len(files) == 9


def test_in_memory_sets_take_the_subset_before_resizing(fmnist_dir):
    # The whole test split at 1024x1024 would be 10 GB: only the 4 examples are resized.
    x = load_dataset("fashion-mnist", "test", fmnist_dir, image_size=1024, n=4, seed=3)
    raw = load_dataset("fashion-mnist", "test", fmnist_dir).take(4, seed=3)
    assert x.images.shape == (4, 1, 1024, 1024) and torch.equal(x.labels, raw.labels)
    assert torch.equal(x.images, raw.resize(1024).images)
