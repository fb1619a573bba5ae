"""CIFAR-10 in both released formats, written small, plus the unpickler's refusals."""

from __future__ import annotations

import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from advscale.data import DataError, dataset_info, load_dataset
from advscale.data.cifar import CLASSES, MEAN, STD, RestrictedUnpickler, safe_unpickle

RECORDS = {
    "data_batch_1": 3,
    "data_batch_2": 2,
    "data_batch_3": 2,
    "data_batch_4": 2,
    "data_batch_5": 1,
    "test_batch": 4,
}


def _batch(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 3072), dtype=np.uint8), rng.integers(0, 10, n).astype(np.uint8)


def write_binary(root: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    d = root / "cifar-10-batches-bin"
    d.mkdir(parents=True)
    batches = {}
    for i, (stem, n) in enumerate(RECORDS.items()):
        data, labels = _batch(n, i)
        (d / f"{stem}.bin").write_bytes(np.concatenate([labels[:, None], data], 1).tobytes())
        batches[stem] = (data, labels)
    (d / "batches.meta.txt").write_text("\n".join(CLASSES) + "\n\n")
    return batches


def _py2_str(b: bytes) -> bytes:
    return (b"U" + bytes([len(b)]) + b) if len(b) < 256 else (b"T" + struct.pack("<I", len(b)) + b)


def py2_pickle(data: np.ndarray, labels: np.ndarray) -> bytes:
    """A batch in the layout Python 2's cPickle wrote the released CIFAR-10 files in.

    Strings are byte strings, the array is rebuilt by numpy.core.multiarray._reconstruct.
    """
    n, m = data.shape
    out = b"\x80\x02}(" + _py2_str(b"data")
    out += (
        b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85"
        + _py2_str(b"b")
        + b"\x87R"
    )
    out += b"(K\x01M" + struct.pack("<H", n) + b"M" + struct.pack("<H", m) + b"\x86"
    out += b"cnumpy\ndtype\n" + _py2_str(b"u1") + b"K\x00K\x01\x87R"
    out += b"(K\x03" + _py2_str(b"|") + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb"
    out += b"\x89" + _py2_str(data.tobytes()) + b"tb"
    out += _py2_str(b"labels") + b"](" + b"".join(b"K" + bytes([int(v)]) for v in labels) + b"eu."
    return out


def write_python(root: Path, protocol: int | str = 2) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    d = root / "cifar-10-batches-py"
    d.mkdir(parents=True)
    batches = {}
    for i, (stem, n) in enumerate(RECORDS.items()):
        data, labels = _batch(n, i)
        record = {
            b"batch_label": stem.encode(),
            b"labels": [int(v) for v in labels],
            b"data": data,
            b"filenames": [f"img_{j}.png".encode() for j in range(n)],
        }
        raw = (
            py2_pickle(data, labels)
            if protocol == "py2"
            else pickle.dumps(record, protocol=protocol)
        )
        (d / stem).write_bytes(raw)
        batches[stem] = (data, labels)
    meta = {
        b"num_cases_per_batch": 10000,
        b"label_names": [c.encode() for c in CLASSES],
        b"num_vis": 3072,
    }
    if protocol == "py2":
        names = b"".join(_py2_str(c.encode()) for c in CLASSES)
        (d / "batches.meta").write_bytes(
            b"\x80\x02}(" + _py2_str(b"label_names") + b"](" + names + b"eu."
        )
    else:
        (d / "batches.meta").write_bytes(pickle.dumps(meta, protocol=protocol))
    return batches


def _expected(batches, stems):
    data = np.concatenate([batches[s][0] for s in stems]).reshape(-1, 3, 32, 32)
    labels = np.concatenate([batches[s][1] for s in stems]).astype(np.int64)
    return torch.from_numpy(data), torch.from_numpy(labels)


@pytest.mark.parametrize("fmt", ["binary", "python2", "python-p2", "python-p4", "python-p5"])
def test_both_formats_read_records_in_order(tmp_path, fmt):
    if fmt == "binary":
        batches = write_binary(tmp_path)
    elif fmt == "python2":
        batches = write_python(tmp_path, protocol="py2")
        raw = (tmp_path / "cifar-10-batches-py" / "test_batch").read_bytes()
        assert pickle.loads(raw, encoding="bytes")[b"labels"] == batches["test_batch"][1].tolist()
    else:
        batches = write_python(tmp_path, protocol=int(fmt[-1]))
    train = load_dataset("cifar10", "train", tmp_path)
    test = load_dataset("cifar10", "test", tmp_path)
    x, y = _expected(batches, [f"data_batch_{i}" for i in range(1, 6)])
    assert train.images.shape == (10, 3, 32, 32) and train.images.dtype == torch.uint8
    assert torch.equal(train.images, x) and torch.equal(train.labels, y)
    x, y = _expected(batches, ["test_batch"])
    assert torch.equal(test.images, x) and torch.equal(test.labels, y)
    assert train.classes == CLASSES and train.mean == MEAN and train.std == STD


def test_pixel_layout_is_channel_planes_row_major(tmp_path):
    """Byte 0-1023 are red, 1024-2047 green, 2048-3071 blue, each 32 rows of 32."""
    write_binary(tmp_path)
    d = tmp_path / "cifar-10-batches-bin"
    record = np.zeros(3073, np.uint8)
    record[0] = 7
    record[1 + 0 * 1024 + 1 * 32 + 2] = 11  # red, row 1, column 2
    record[1 + 2 * 1024 + 31 * 32 + 0] = 22  # blue, row 31, column 0
    (d / "test_batch.bin").write_bytes(record.tobytes())
    test = load_dataset("cifar10", "test", tmp_path)
    assert test.labels.tolist() == [7]
    assert test.images[0, 0, 1, 2] == 11 and test.images[0, 2, 31, 0] == 22
    assert int(test.images.sum()) == 33


def test_batches_directory_itself_or_env_var(tmp_path, monkeypatch):
    write_binary(tmp_path)
    assert len(load_dataset("cifar10", "test", tmp_path / "cifar-10-batches-bin")) == 4
    monkeypatch.setenv("ADVSCALE_DATA", str(tmp_path))
    assert len(load_dataset("cifar10", "test", image_size=16, channels=1)) == 4


def test_binary_file_of_wrong_size(tmp_path):
    write_binary(tmp_path)
    path = tmp_path / "cifar-10-batches-bin" / "data_batch_3.bin"
    path.write_bytes(path.read_bytes()[:-1])
    with pytest.raises(DataError, match="wrong size 6145 bytes") as e:
        load_dataset("cifar10", "train", tmp_path)
    assert str(path) in str(e.value)


def test_missing_batch_is_named(tmp_path):
    write_binary(tmp_path)
    (tmp_path / "cifar-10-batches-bin" / "data_batch_5.bin").unlink()
    with pytest.raises(DataError, match=r"data_batch_5\.bin: CIFAR-10 batch missing"):
        load_dataset("cifar10", "train", tmp_path)


def test_label_out_of_range(tmp_path):
    write_binary(tmp_path)
    path = tmp_path / "cifar-10-batches-bin" / "test_batch.bin"
    raw = bytearray(path.read_bytes())
    raw[3073] = 12  # second record's label
    path.write_bytes(bytes(raw))
    with pytest.raises(DataError, match="label 12 out of range"):
        load_dataset("cifar10", "test", tmp_path)


def test_no_cifar_directory(tmp_path):
    with pytest.raises(DataError, match="cifar-10-batches-bin/ or cifar-10-batches-py/.*not found"):
        load_dataset("cifar10", "test", tmp_path)
    with pytest.raises(DataError, match="does not exist"):
        load_dataset("cifar10", "test", tmp_path / "nope")


class _Exploit:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_is_refused_before_running(tmp_path):
    write_python(tmp_path)
    marker = tmp_path / "pwned"
    path = tmp_path / "cifar-10-batches-py" / "test_batch"
    path.write_bytes(pickle.dumps({b"data": _Exploit(marker), b"labels": []}, protocol=2))
    # The same bytes do run code when loaded with plain pickle: the test file is a real exploit.
    with pytest.raises(DataError, match=r"refusing to load (posix|nt|os)\.system") as e:
        load_dataset("cifar10", "test", tmp_path)
    assert str(path) in str(e.value)
    assert not marker.exists()
    pickle.loads(path.read_bytes())
    assert marker.exists()


@pytest.mark.parametrize(
    "payload",
    [
        pickle.dumps(eval),  # builtins.eval
        b"cbuiltins\nexec\n(S'print(1)'\ntR.",
        b"c_codecs\nencode\n(S'x'\nS'rot13'\ntR.",
        b"cnumpy\nload\n(S'/etc/passwd'\ntR.",
    ],
    ids=["eval", "exec", "codecs-other", "numpy-load"],
)
def test_unpickler_refuses_anything_but_arrays(tmp_path, payload):
    path = tmp_path / "batch"
    path.write_bytes(payload)
    with pytest.raises(DataError, match="unsafe or corrupt pickle"):
        safe_unpickle(path)


def test_corrupt_and_wrong_content_pickles(tmp_path):
    path = tmp_path / "cifar-10-batches-py"
    write_python(tmp_path)
    (path / "test_batch").write_bytes(
        pickle.dumps({b"data": np.zeros((2, 3072), np.uint8)}, protocol=2)
    )
    with pytest.raises(DataError, match="lacks 'data' or 'labels'"):
        load_dataset("cifar10", "test", tmp_path)
    (path / "test_batch").write_bytes(
        pickle.dumps({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]})
    )
    with pytest.raises(DataError, match=r"shape \(N, 3072\)"):
        load_dataset("cifar10", "test", tmp_path)
    (path / "test_batch").write_bytes(pickle.dumps([1, 2, 3])[:-3])
    with pytest.raises(DataError, match="corrupt pickle"):
        load_dataset("cifar10", "test", tmp_path)


def test_restricted_unpickler_round_trips_plain_data():
    import io

    obj = {
        b"a": [1, 2.5, b"x", "y"],
        b"arr": np.arange(6, dtype=np.float32).reshape(2, 3),
        b"n": np.int64(4),
    }
    for protocol in (2, 4, 5):
        back = RestrictedUnpickler(
            io.BytesIO(pickle.dumps(obj, protocol=protocol)), encoding="bytes"
        ).load()
        assert back[b"a"] == obj[b"a"] and back[b"n"] == 4
        np.testing.assert_array_equal(back[b"arr"], obj[b"arr"])


def test_class_names_come_from_the_meta_file(tmp_path):
    write_binary(tmp_path)
    names = [f"k{i}" for i in range(10)]
    (tmp_path / "cifar-10-batches-bin" / "batches.meta.txt").write_text("\n".join(names))
    assert load_dataset("cifar10", "test", tmp_path).classes == names
    (tmp_path / "cifar-10-batches-bin" / "batches.meta.txt").write_text("a\nb\n")
    with pytest.raises(DataError, match="batches.meta.txt: lists 2 class names, expected 10"):
        load_dataset("cifar10", "test", tmp_path)


def test_dataset_info(tmp_path):
    write_python(tmp_path, protocol="py2")
    info = dataset_info("cifar10", tmp_path)
    assert info["location"] == str(tmp_path / "cifar-10-batches-py")
    assert info["splits"]["train"]["size"] == 10 and info["splits"]["test"]["size"] == 4
    assert info["channels"] == 3 and info["image_size"] == [32, 32] and info["mean"] == list(MEAN)
