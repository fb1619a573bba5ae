"""ImageFolder datasets from generated PNG/JPEG files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from advscale.data import DataError, check_class_order, dataset_info, load_dataset

COLOURS = {"cat": (200, 30, 30), "dog": (30, 200, 30), "emu": (30, 30, 200)}


def _png(path: Path, colour, size=(12, 10), mode="RGB") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.new("RGB", size, colour)
    im.convert(mode).save(path)
    return path


def make_folder(root: Path, per_class: int = 5, classes=("cat", "dog", "emu"), **kw) -> Path:
    for c in classes:
        for i in range(per_class):
            _png(root / c / f"{i}.png", COLOURS[c], **kw)
    return root


def test_classes_sorted_labels_follow_folders(tmp_path):
    root = make_folder(tmp_path / "pets", per_class=5)
    train = load_dataset("imagefolder", "train", root)
    test = load_dataset("imagefolder", "test", root)
    assert train.classes == ["cat", "dog", "emu"]
    assert train.images.shape[1:] == (3, 10, 12) and train.images.dtype == torch.uint8
    # No split folders: a fixed stratified 80/20 split, disjoint, covering all 15 images.
    assert train.class_counts() == [4, 4, 4] and test.class_counts() == [1, 1, 1]
    for ds in (train, test):
        for label, c in enumerate(ds.classes):
            assert ds.images[ds.labels == label][:, :, 0, 0].unique(dim=0).tolist() == [
                list(COLOURS[c])
            ]
    again = load_dataset("imagefolder", "train", root)
    assert torch.equal(again.labels, train.labels) and torch.equal(again.images, train.images)


def test_split_folders_share_class_indices(tmp_path):
    make_folder(tmp_path / "train", per_class=3)
    make_folder(tmp_path / "val", per_class=2)
    train = load_dataset("imagefolder", "train", tmp_path)
    test = load_dataset("imagefolder", "test", tmp_path)  # "val" stands in for "test"
    assert train.classes == test.classes == ["cat", "dog", "emu"]
    assert len(train) == 9 and test.class_counts() == [2, 2, 2]
    assert test.images[test.labels == 1][0, :, 0, 0].tolist() == list(COLOURS["dog"])


@pytest.mark.parametrize(("train", "val", "named"), [
    (("cat", "dog", "emu"), ("dog", "emu"), "'cat' is in .*train but not in .*val"),
    (("cat", "dog"), ("cat", "dog", "emu"), "'emu' is in .*val but not in .*train"),
])  # fmt: skip
def test_classes_differing_between_splits_are_refused_naming_the_class(tmp_path, train, val, named):
    # Labels follow sorted folder names: a class missing on one side would shift or orphan them.
    make_folder(tmp_path / "train", per_class=2, classes=train)
    make_folder(tmp_path / "val", per_class=2, classes=val)
    for split in ("train", "test"):
        with pytest.raises(DataError, match=named):
            load_dataset("imagefolder", split, tmp_path)


def test_resize_grey_and_channels(tmp_path):
    root = make_folder(tmp_path / "g", per_class=3, mode="L")
    grey = load_dataset("imagefolder", "train", root)
    assert grey.channels == 1 and grey.images.shape[1:] == (1, 10, 12)
    rgb = load_dataset("imagefolder", "train", root, image_size=28, channels=3)
    assert rgb.images.shape[1:] == (3, 28, 28)
    assert len(rgb.mean) == 3 and torch.equal(rgb.images[:, 0], rgb.images[:, 1])


def test_mean_std_are_computed_from_the_images(tmp_path):
    root = make_folder(tmp_path / "p", per_class=5)
    train = load_dataset("imagefolder", "train", root)
    x = train.images.double() / 255
    assert train.mean == pytest.approx(x.mean((0, 2, 3)).tolist(), abs=1e-4)
    assert train.std == pytest.approx(x.std((0, 2, 3), unbiased=False).tolist(), abs=1e-4)


def test_extensions_case_insensitive_and_other_files_ignored(tmp_path):
    root = tmp_path / "r"
    _png(root / "a" / "x.PNG", (10, 20, 30))
    Image.new("RGB", (12, 10), (40, 50, 60)).save(root / "a" / "y.JPG", quality=95)
    _png(root / "a" / "z.bmp", (70, 80, 90))
    (root / "a" / "notes.txt").write_text("not an image")
    _png(root / "b" / "1.jpeg", (1, 2, 3))
    _png(root / "b" / "2.png", (1, 2, 3))
    ds = load_dataset("imagefolder", "train", root)
    test = load_dataset("imagefolder", "test", root)
    assert len(ds) + len(test) == 5


def test_mixed_sizes_need_image_size(tmp_path):
    root = tmp_path / "m"
    make_folder(root / "train", per_class=2, classes=("cat",))
    _png(root / "train" / "dog" / "big.png", COLOURS["dog"], size=(20, 20))
    with pytest.raises(DataError, match="big.png: size 20x20 differs.*pass image_size"):
        load_dataset("imagefolder", "train", root).load()
    assert load_dataset("imagefolder", "train", root, image_size=(8, 16)).image_size == (8, 16)


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda r: r.mkdir(), "no class folders"),
        (lambda r: (make_folder(r, 2), (r / "fox").mkdir()), r"fox: class folder has no images"),
        (
            lambda r: (make_folder(r, 2), (r / "cat" / "0.png").write_bytes(b"\x89PNG broken")),
            r"0\.png: cannot read image",
        ),
        (lambda r: None, "image folder does not exist"),
        (lambda r: make_folder(r / "train", 2), "split folders \\['train'\\] but none for 'test'"),
    ],
    ids=["empty-root", "empty-class", "corrupt-image", "missing-root", "missing-split"],
)
def test_bad_folders_are_clear_errors(tmp_path, setup, message):
    root = tmp_path / "root"
    setup(root)
    with pytest.raises(DataError, match=message):
        load_dataset("imagefolder", "test", root).load()  # images are decoded when loaded


def test_needs_data_dir_and_valid_channels(tmp_path):
    with pytest.raises(DataError, match="needs data_dir"):
        load_dataset("imagefolder", "train")
    with pytest.raises(DataError, match="channels must be 1 or 3"):
        load_dataset("imagefolder", "train", make_folder(tmp_path / "x", 2), channels=2)


def test_dataset_info_of_a_folder(tmp_path):
    root = make_folder(tmp_path / "pets", per_class=5)
    info = dataset_info("imagefolder", root)
    assert info["classes"] == ["cat", "dog", "emu"] and info["channels"] == 3
    assert info["image_size"] == [10, 12]
    assert info["splits"] == {
        "train": {"size": 12, "class_counts": [4, 4, 4]},
        "test": {"size": 3, "class_counts": [1, 1, 1]},
    }
    assert info["location"] == str(root)
    np.testing.assert_allclose(info["mean"], load_dataset("imagefolder", "train", root).mean)


def test_class_order_is_checked_against_the_model_or_said_to_be_unchecked(tmp_path):
    root = make_folder(tmp_path / "pets", per_class=2)
    classes = load_dataset("imagefolder", "test", root).classes
    assert "matches model.ts (3 classes)" in check_class_order(
        classes, ["cat", "dog", "emu"], "pets", "model.ts"
    )
    with pytest.raises(DataError) as e:  # same classes, another order: labels would be wrong
        check_class_order(classes, ["dog", "cat", "emu"], "pets (test)", "model.ts")
    msg = str(e.value)
    assert "class names of model.ts do not match those of pets (test)" in msg
    assert "0: model 'dog' vs data 'cat'; 1: model 'cat' vs data 'dog'" in msg
    assert "Model classes: ['dog', 'cat', 'emu']; data classes: ['cat', 'dog', 'emu']" in msg
    note = check_class_order(classes, None, "pets (test)", "model.ts")
    assert note.startswith("class order of pets (test) not checked") and "unknown" in note
