"""WebDataset-format tar shards: read, written, and decoded (streamed for training by
:mod:`advscale.data.shard_stream`), without extra dependencies.

A shard is a plain tar file; files sharing a basename form one sample, e.g. ``000123.png`` +
``000123.cls``. Images: png/jpg/jpeg/ppm/pgm/bmp (decoded with Pillow, 8 bits per channel) or
npy (CHW or HWC, loaded without pickle). Labels: cls/label/txt holding an integer.

Images are uint8 in memory. An npy image must be uint8, or floating point with every value in
[0, 1], which is scaled by 255 and rounded (``round(x * 255)``); any other dtype or range, and
Pillow images of more than 8 bits per channel, are refused rather than cast (a cast would turn
[0, 1] floats into black images). A label must lie in ``[0, num_classes)`` (an ignore label such
as -100 is refused). Every error names the shard file and the sample key. Class names travel
beside the shards in ``classes.json``; a validation set is drawn class-stratified.
"""

from __future__ import annotations

import glob
import io
import json
import tarfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from advscale.data.base import (
    DataError,
    ImageDataset,
    channel_stats,
    stratified_order,
)
from advscale.data.decode import open_image, probe, to_chw
from advscale.data.imagefolder import FolderDataset
from advscale.utils import atomic_write, atomic_write_json

IMAGE_EXTS = ("png", "jpg", "jpeg", "ppm", "pgm", "bmp", "npy")
#: Pillow modes whose channels hold more than 8 bits: converting them would clip silently.
WIDE_MODES = ("I", "F", "I;16", "I;16B", "I;16L", "I;16N")
LABEL_EXTS = ("cls", "label", "txt")


def list_shards(spec: str | Path) -> list[Path]:
    """Shard files named by a directory (its ``*.tar``), a glob, or one file; sorted."""
    spec = str(spec)
    p = Path(spec).expanduser()
    if p.is_dir():
        shards = sorted(p.glob("*.tar"))
    elif any(c in spec for c in "*?["):
        shards = sorted(Path(s) for s in glob.glob(str(Path(spec).expanduser())))
    else:
        shards = [p] if p.exists() else []
    if not shards:
        raise DataError(
            f"data.data_dir {spec!r}: no .tar shards found (give a directory or a glob like 'shards/*.tar')"
        )
    return shards


def _split_name(name: str) -> tuple[str, str]:
    """``dir/000123.seg.png`` -> (``dir/000123``, ``seg.png``): the key ends at the first dot of the basename."""
    head, _, base = name.rpartition("/")
    stem, dot, ext = base.partition(".")
    return (f"{head}/{stem}" if head else stem), (ext if dot else "")


def iter_tar_samples(path: Path, labels_only: bool = False) -> Iterator[dict[str, bytes]]:
    """Samples of one shard in file order, as ``{ext: bytes, "__key__": key}``; read as a
    stream (with ``labels_only``, other files are skipped unread)."""
    key = None
    try:
        with tarfile.open(path, "r|*") as tar:
            current: dict[str, bytes] = {}
            for member in tar:
                if not member.isfile():
                    continue
                k, ext = _split_name(member.name)
                if k != key and current:
                    yield current
                    current = {}
                key = k
                if labels_only and ext.lower() not in LABEL_EXTS:
                    current["__key__"] = k.encode()
                    continue
                f = tar.extractfile(member)
                current[ext.lower()] = f.read() if f is not None else b""
                current["__key__"] = k.encode()
            if current:
                yield current
    except (tarfile.TarError, OSError) as e:
        where = f" (after sample {key!r})" if key is not None else ""
        raise DataError(f"{path}: not a readable tar shard{where} ({e})") from None


def count_samples(path: Path) -> int:
    """Number of samples in a shard (reads the tar headers only)."""
    try:
        with tarfile.open(path, "r:*") as tar:
            return len({_split_name(m.name)[0] for m in tar.getmembers() if m.isfile()})
    except (tarfile.TarError, OSError) as e:
        raise DataError(f"{path}: not a readable tar shard ({e})") from None


def decode_sample(
    sample: dict[str, bytes], source: str = "shard", num_classes: int | None = None
) -> tuple[Tensor, int]:
    """(uint8 image (C, H, W), label) of one sample of shard ``source``.

    Raises:
        DataError: missing image or label, an undecodable image, an image that is not 8-bit
            (see the module docstring), a label outside ``[0, num_classes)``; the message names
            ``source`` and the sample key.
    """
    key = sample.get("__key__", b"?").decode()
    where = f"{source}: sample {key!r}"
    img_ext = next((e for e in IMAGE_EXTS if e in sample), None)
    if img_ext is None or not any(e in sample for e in LABEL_EXTS):
        raise DataError(
            f"{where} has files {sorted(k for k in sample if k != '__key__')}; "
            f"needs an image ({', '.join(IMAGE_EXTS)}) and a label ({', '.join(LABEL_EXTS)})"
        )
    label = _label_of(sample, where, num_classes)
    raw = sample[img_ext]
    img = _decode_npy(raw, where) if img_ext == "npy" else _decode_picture(raw, img_ext, where)
    return img, label


def _decode_npy(raw: bytes, where: str) -> Tensor:
    try:
        arr = np.load(io.BytesIO(raw), allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise DataError(f"{where}: cannot read the npy image ({e})") from None
    if arr.ndim == 2:
        arr = arr[None]
    elif arr.ndim == 3 and arr.shape[-1] in (1, 3) and arr.shape[0] not in (1, 3):
        arr = arr.transpose(2, 0, 1)
    if arr.ndim != 3:
        raise DataError(f"{where}: npy image of shape {arr.shape}; expected (C, H, W) or (H, W, C)")
    return torch.from_numpy(np.ascontiguousarray(_as_uint8(arr, where)))


def _as_uint8(arr: np.ndarray, where: str) -> np.ndarray:
    """uint8 as is; floats in [0, 1] scaled by 255 and rounded; anything else refused."""
    if arr.dtype == np.uint8:
        return arr
    if np.issubdtype(arr.dtype, np.floating):
        lo, hi = (float(arr.min()), float(arr.max())) if arr.size else (0.0, 0.0)
        if np.isfinite(lo) and np.isfinite(hi) and lo >= 0.0 and hi <= 1.0:
            return np.rint(arr.astype(np.float64) * 255).astype(np.uint8)
        raise DataError(
            f"{where}: npy image of {arr.dtype} with values in [{lo:g}, {hi:g}]; float images "
            "must lie in [0, 1] (they are scaled by 255), or store uint8 in [0, 255]"
        )
    raise DataError(f"{where}: npy image of dtype {arr.dtype}; store uint8, or floats in [0, 1]")


def _decode_picture(raw: bytes, ext: str, where: str) -> Tensor:
    mode, _, _ = probe(raw, where)  # the header only: refuses images over the pixel limit
    if mode in WIDE_MODES:
        raise DataError(
            f"{where}: {ext} image in mode {mode} (more than 8 bits per channel); "
            "store 8-bit images (mode L or RGB), or npy floats in [0, 1]"
        )
    arr = to_chw(open_image(raw, 1 if mode == "L" else 3, where))
    return torch.from_numpy(arr.copy())


CLASSES_FILE = "classes.json"


def write_shards(
    dataset: ImageDataset | FolderDataset,
    out_dir: str | Path,
    shard_size: int = 1000,
    prefix: str = "shard",
) -> list[Path]:
    """Write ``dataset`` as WebDataset tar shards of ``shard_size`` samples (png + cls) and its
    class names as ``out_dir/classes.json``; returns the shard paths.

    One image at a time is decoded (an image folder) and encoded, so the dataset need not fit
    in memory; each shard is written to a temporary file and renamed when complete.
    """
    from PIL import Image

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    read = (
        dataset.read
        if isinstance(dataset, FolderDataset)
        else (lambda i: dataset.images[i].numpy())
    )
    paths = []
    for s, start in enumerate(range(0, len(dataset), shard_size)):
        path = out / f"{prefix}-{s:06d}.tar"

        def write(tmp: Path, start: int = start) -> None:
            with tarfile.open(tmp, "w") as tar:
                for i in range(start, min(start + shard_size, len(dataset))):
                    img = np.ascontiguousarray(read(i).transpose(1, 2, 0))
                    buf = io.BytesIO()
                    Image.fromarray(img[..., 0] if img.shape[-1] == 1 else img).save(buf, "PNG")
                    for ext, data in (
                        ("png", buf.getvalue()),
                        ("cls", str(int(dataset.labels[i])).encode()),
                    ):
                        info = tarfile.TarInfo(f"{i:08d}.{ext}")
                        info.size = len(data)
                        tar.addfile(info, io.BytesIO(data))

        paths.append(atomic_write(path, write))
    atomic_write_json(out / CLASSES_FILE, list(dataset.classes))
    return paths


def shard_classes(spec: str | Path, shards: Sequence[Path]) -> list[str] | None:
    """Class names written beside the shards (``classes.json``), or None."""
    p = Path(spec).expanduser()
    path = (p if p.is_dir() else shards[0].parent) / CLASSES_FILE
    if not path.is_file():
        return None
    try:
        names = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: not a JSON list of class names ({e})") from None
    if not (isinstance(names, list) and names and all(isinstance(c, str) for c in names)):
        raise DataError(f"{path}: not a JSON list of class names")
    return names


def _label_of(sample: dict[str, bytes], where: str, num_classes: int | None) -> int:
    lab_ext = next((e for e in LABEL_EXTS if e in sample), None)
    if lab_ext is None:
        raise DataError(f"{where}: no label ({', '.join(LABEL_EXTS)})")
    try:
        label = int(sample[lab_ext].decode().strip())
    except (ValueError, UnicodeDecodeError):
        raise DataError(f"{where}: label {sample[lab_ext][:20]!r} is not an integer") from None
    if label < 0 or (num_classes is not None and label >= num_classes):
        bound = f"[0, {num_classes})" if num_classes is not None else "0 or more"
        raise DataError(f"{where}: label {label} is outside the classes ({bound})")
    return label


def load_shards(
    spec: str | Path,
    n: int | None = None,
    *,
    num_classes: int | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    name: str = "webdataset",
    seed: int = 0,
) -> ImageDataset:
    """``n`` samples of the shards in memory (validation sets): all, in file order, when
    ``n`` is None or covers them, else a class-stratified draw fixed by ``seed`` (labels are
    read first; only the samples drawn are decoded). Class names come from ``classes.json``
    beside the shards when there is one."""
    shards = list_shards(spec)
    classes = shard_classes(spec, shards)
    k_given = num_classes or (len(classes) if classes else None)
    keep: set[int] | None = None
    if n is not None:
        labels = [
            _label_of(smp, f"{p}: sample {smp['__key__'].decode()!r}", k_given)
            for p in shards
            for smp in iter_tar_samples(p, labels_only=True)
        ]
        if n < len(labels):
            y = torch.tensor(labels, dtype=torch.long)
            keep = set(stratified_order(y, int(y.max()) + 1, n, seed).tolist())
    images, labels, origins = [], [], []
    i = -1
    for path in shards:
        for sample in iter_tar_samples(path):
            i += 1
            if keep is not None and i not in keep:
                continue
            img, lab = decode_sample(sample, str(path), k_given)
            images.append(img)
            labels.append(lab)
            origins.append(f"{path}: sample {sample['__key__'].decode()!r}")
    if not images:
        raise DataError(f"{spec}: the shards hold no samples")
    odd = next((i for i, im in enumerate(images) if im.shape != images[0].shape), None)
    if odd is not None:
        raise DataError(
            f"{origins[odd]}: image of shape {tuple(images[odd].shape)} differs from "
            f"{origins[0]} ({tuple(images[0].shape)}); write shards of one image size"
        )
    k = k_given or (max(labels) + 1)
    x = torch.stack(images)
    if mean is None or std is None:
        m, s = channel_stats(x)
        mean, std = mean or m, std or s
    return ImageDataset(
        x,
        torch.tensor(labels, dtype=torch.long),
        classes if classes and len(classes) == k else [str(i) for i in range(k)],
        name,
        tuple(mean),
        tuple(std),
    )
