"""The index of an image folder: its class list and files, listed once and cached.

Listing is all an index costs (no image is decoded); channels, size and normalisation
statistics of a split are added to the same file when first asked for, from a class-stratified
sample of :data:`STATS_SAMPLE` images. The file is ``ROOT/.advscale-index.json``, written
atomically, or, when ``ROOT`` is read-only, ``$ADVSCALE_CACHE`` (default
``~/.cache/advscale``) ``/index/<hash of ROOT>.json``. It is rebuilt when the folders in the
root change, or the modification time of a split or class folder (a file added, removed or
renamed) or of a label file.

Layouts: ``ROOT/CLASS/*.png`` (80/20 split per class with a fixed seed), ``ROOT/{train,val,
test}/CLASS/*``, and ImageNet's validation layout as distributed, a flat ``ROOT/val/*.JPEG``
with ``ROOT/LOC_val_solution.csv``, or any flat ``ROOT/SPLIT/`` with ``ROOT/SPLIT/labels.csv``
(``file,class`` rows).
"""

from __future__ import annotations

import base64
import csv
import hashlib
import os
from pathlib import Path
from typing import Any

import numpy as np

from advscale.data.base import DataError
from advscale.errors import UserError
from advscale.files import read_json
from advscale.utils import atomic_write_json

EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp")
SPLITS = ("train", "test", "val")
INDEX_NAME = ".advscale-index.json"
INDEX_VERSION = 2
MAX_INDEX_BYTES = 2**30
#: Images decoded to measure a split's channels, size and statistics.
STATS_SAMPLE = 1000


def _class_dirs(d: Path) -> list[str]:
    return sorted(e.name for e in os.scandir(d) if e.is_dir() and not e.name.startswith("."))


def _image_names(d: Path) -> list[str]:
    return sorted(
        e.name
        for e in os.scandir(d)
        if not e.name.startswith(".")
        and os.path.splitext(e.name)[1].lower() in EXTENSIONS
        and e.is_file()
    )


def _mtime(p: Path) -> int:
    return p.stat().st_mtime_ns


def _label_file(root: Path, split: str) -> Path | None:
    names = [f"{split}/labels.csv", *(["LOC_val_solution.csv"] if split == "val" else [])]
    return next((root / f for f in names if (root / f).is_file()), None)


def _flat_labels(root: Path, split: str, names: list[str]) -> dict[str, str]:
    """Class of each image of a flat split folder, from its label file."""
    path = _label_file(root, split)
    if path is None:
        raise DataError(
            f"{root / split}: images without class folders and no label file "
            f"({root / split}/labels.csv with file,class rows); put each image in "
            f"{root / split}/CLASS/ or write that file"
        )
    given: dict[str, str] = {}
    with open(path, newline="") as f:
        for row in csv.reader(f):
            if len(row) >= 2 and row[1].split() and row[0] not in ("ImageId", "file"):
                # Kaggle's solution file: "ILSVRC2012_val_00000001,n01751748 x y x y ...".
                given[row[0].strip()] = row[1].split()[0]
    labels = {}
    for n in names:
        cls = given.get(n) or given.get(os.path.splitext(n)[0])
        if not cls:
            raise DataError(f"{path}: no class for {root / split / n}")
        labels[n] = cls
    return labels


def scan(root: Path) -> dict[str, Any]:
    """List ``root``: classes, and per split its folder, files (relative to ``root``) and labels."""
    split_names = [s for s in SPLITS if (root / s).is_dir()]
    # The root's own time changes when the index is written into it: its folders are compared.
    dirs: dict[str, int] = {}
    splits: dict[str, Any] = {}
    per_split_classes: dict[str, list[str]] = {}
    flat: dict[str, dict[str, str]] = {}
    for s in split_names or ["."]:
        d = root / s
        if s != ".":
            dirs[s] = _mtime(d)
        names = _class_dirs(d)
        images = _image_names(d) if not names and split_names else []
        if images:
            try:
                flat[s] = _flat_labels(root, s, images)
            except DataError as e:  # e.g. ImageNet's unlabelled test folder: refused if used
                splits[s] = {"error": str(e)}
                continue
            names = sorted(set(flat[s].values()))
        per_split_classes[s] = names
    if split_names:
        _check_same_classes(root, per_split_classes)
    classes = sorted({c for names in per_split_classes.values() for c in names})
    if not classes:
        raise DataError(f"{root}: no class folders (expected {root}/CLASS/*.png)")
    label_of = {c: i for i, c in enumerate(classes)}
    for s, names in per_split_classes.items():
        files: list[str] = []
        labels: list[int] = []
        if s in flat:
            for n, cls in sorted(flat[s].items()):
                files.append(f"{s}/{n}")
                labels.append(label_of[cls])
        for c in names if s not in flat else []:
            d = root / s / c
            dirs[f"{s}/{c}"] = _mtime(d)
            found = _image_names(d)
            if not found:
                raise DataError(f"{d}: class folder has no images ({', '.join(EXTENSIONS)})")
            prefix = f"{c}/" if s == "." else f"{s}/{c}/"
            files += [prefix + n for n in found]
            labels += [label_of[c]] * len(found)
        # One string and one packed array: a million files parse in a fraction of a second.
        splits[s] = {
            "files": "\n".join(files),
            "labels": base64.b64encode(np.asarray(labels, dtype="<i4").tobytes()).decode(),
        }
    for s in flat:
        label_file = _label_file(root, s)
        dirs[str(label_file.relative_to(root))] = _mtime(label_file)
    return {"version": INDEX_VERSION, "root": str(root), "top": _class_dirs(root), "dirs": dirs,
            "classes": classes, "splits": splits, "stats": {}}  # fmt: skip


def _check_same_classes(root: Path, per_split: dict[str, list[str]]) -> None:
    """Refuse split folders whose classes differ: labels would mean different things."""
    items = list(per_split.items())
    first, first_names = items[0]
    for s, names in items[1:]:
        only_first = sorted(set(first_names) - set(names))
        only_here = sorted(set(names) - set(first_names))
        if only_first or only_here:
            cls, has, lacks = (only_first[0], first, s) if only_first else (only_here[0], s, first)
            more = len(only_first) + len(only_here) - 1
            raise DataError(
                f"{root}: class {cls!r} is in {root / has} but not in {root / lacks}"
                + (f" ({more} more classes differ)" if more else "")
                + "; every split must hold the same class folders"
            )


def _cache_path(root: Path) -> Path:
    base = Path(os.environ.get("ADVSCALE_CACHE") or Path.home() / ".cache" / "advscale")
    return base / "index" / (hashlib.sha1(str(root).encode()).hexdigest()[:16] + ".json")


def _fresh(index: dict[str, Any], root: Path) -> bool:
    if index.get("version") != INDEX_VERSION or index.get("root") != str(root):
        return False
    try:
        same = all(_mtime(root / d) == t for d, t in index["dirs"].items())
        return same and index.get("top") == _class_dirs(root)
    except OSError:
        return False


def _read(path: Path) -> dict[str, Any] | None:
    try:  # ImageNet's index is about 60 MB; a larger or malformed file is listed anew
        index = read_json(path, "data index", limit=MAX_INDEX_BYTES)
    except UserError:
        return None
    return index if isinstance(index, dict) else None


def save_index(index: dict[str, Any], root: Path) -> Path | None:
    """Write ``index`` next to the data, else in the cache directory; None when neither works."""
    for path in (root / INDEX_NAME, _cache_path(root)):
        try:
            return atomic_write_json(path, index)
        except (OSError, UserError):  # read-only, or a link or folder in the way: not written
            continue
    return None


def load_index(root: Path) -> dict[str, Any]:
    """The index of ``root``: read from where it was cached when still fresh, else listed anew."""
    root = root.resolve()
    for path in (root / INDEX_NAME, _cache_path(root)):
        index = _read(path) if path.is_file() else None
        if index is not None and _fresh(index, root):
            return index
    index = scan(root)
    save_index(index, root)
    return index


def split_files(index: dict[str, Any], split: str) -> tuple[np.ndarray, np.ndarray]:
    """(files as a bytes array, relative to the root; labels int64) of one stored split."""
    s = index["splits"][split]
    if "error" in s:
        raise DataError(s["error"])
    files = np.array(s["files"].encode().split(b"\n") if s["files"] else [], dtype=np.bytes_)
    labels = np.frombuffer(base64.b64decode(s["labels"]), dtype="<i4").astype(np.int64)
    return files, labels


def remember(root: Path, section: str, key: str, value: Any) -> None:
    """Store ``value`` under ``section``/``key`` of ``root``'s index (measured once, kept)."""
    root = root.resolve()
    index = load_index(root)
    index.setdefault(section, {})[key] = value
    save_index(index, root)


def recall(index: dict[str, Any], section: str, key: str) -> Any:
    return index.get(section, {}).get(key)
