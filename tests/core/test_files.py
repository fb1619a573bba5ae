"""What advscale writes never goes through a link or onto a device, and what it reads is bounded.

Each test builds the hostile file a careless or malicious user would hand over and checks the
one-line refusal, that nothing outside the target changed, and (for reads) that the refusal
costs little memory.
"""

from __future__ import annotations

import errno
import json
import os
import stat
import tracemalloc
from pathlib import Path

import pytest
import torch

from advscale.errors import UserError
from advscale.files import (
    MAX_DEPTH,
    MAX_YAML_BYTES,
    atomic_write,
    atomic_write_json,
    atomic_write_text,
    check_writable,
    open_regular,
    parse_yaml,
    read_json,
    read_structured,
)
from advscale.models import build_classifier, save_model
from advscale.models.export import staged_export


def billion_laughs(levels: int = 9) -> str:
    """The classic: each level an anchor holding ten aliases of the one below (10^levels)."""
    lines = ["l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for i in range(1, levels):
        lines.append(f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]")
    return "\n".join(lines) + "\n"


# -- reading -------------------------------------------------------------------------------------
def test_billion_laughs_is_refused_before_it_grows(tmp_path):
    path = tmp_path / "lol.yaml"
    path.write_text(billion_laughs())
    assert path.stat().st_size < 1500
    tracemalloc.start()
    try:
        with pytest.raises(UserError, match=r"lol\.yaml: not valid YAML .*aliases are expanded"):
            read_structured(path, "config file")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 * 2**20  # a few MB, not the gigabytes the expansion would take


def test_many_aliases_are_refused_and_a_few_are_read(tmp_path):
    few = "base: &b {steps: 10}\npgd: *b\napgd: *b\n"
    assert parse_yaml(few, "f") == {
        "base": {"steps": 10},
        "pgd": {"steps": 10},
        "apgd": {"steps": 10},
    }
    many = "a: &a 1\nb: [" + ", ".join(["*a"] * 101) + "]\n"
    with pytest.raises(UserError, match="more than 100 aliases"):
        parse_yaml(many, "many.yaml")


def test_recursive_alias_is_refused():
    with pytest.raises(UserError, match="r.yaml: not valid YAML .*recursive alias"):
        parse_yaml("a: &a [1, *a]\n", "r.yaml")


def test_duplicate_keys_are_refused_at_any_depth_and_merge_keys_still_override():
    with pytest.raises(
        UserError, match=r"c.yaml: not valid YAML \(line 3, column 1: duplicate key 'recipe'"
    ):
        parse_yaml("recipe: {name: fgsm}\nepochs: 2\nrecipe: {name: clean}\n", "c.yaml")
    with pytest.raises(UserError, match="duplicate key 'eps'"):
        parse_yaml("recipe:\n  eps: 8\n  name: pgd\n  eps: 4\n", "c.yaml")
    merged = parse_yaml("base: &b {x: 1, y: 2}\nrun:\n  <<: *b\n  x: 3\n", "m.yaml")
    assert merged["run"] == {"x": 3, "y": 2}


def test_size_bound_refuses_dev_zero_and_huge_files(tmp_path):
    with pytest.raises(UserError, match=r"/dev/zero: larger than 1 MiB: not a config file"):
        read_structured("/dev/zero", "config file")
    big = tmp_path / "big.yaml"
    big.write_bytes(b"# " + b"x" * MAX_YAML_BYTES)
    with pytest.raises(UserError, match="big.yaml: larger than"):
        read_structured(big, "config file")
    with pytest.raises(UserError, match="big.json: larger than 10 bytes"):
        (tmp_path / "big.json").write_text('{"a": 12345}')
        read_json(tmp_path / "big.json", "results file", limit=10)


def test_latin1_byte_is_named_with_its_offset(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_bytes("name: café\n".encode("latin-1"))
    with pytest.raises(UserError, match=r"c\.yaml: not UTF-8 text \(byte 0xe9 at offset 9\)"):
        read_structured(path, "config file")
    path.write_bytes("\ufeffname: café\n".encode())  # a UTF-8 byte-order mark is fine
    assert read_structured(path, "config file") == {"name": "café"}


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 100_000])
def test_json_nesting_is_bounded(tmp_path, depth):
    path = tmp_path / "deep.json"
    path.write_text("[" * depth + "]" * depth)
    with pytest.raises(UserError, match=r"deep\.json: (nested|not valid JSON)"):
        read_json(path, "results file")
    path.write_text("[" * MAX_DEPTH + "]" * MAX_DEPTH)
    assert read_json(path, "results file") == eval("[" * MAX_DEPTH + "]" * MAX_DEPTH)  # noqa: S307


def test_yaml_nesting_and_huge_integers_are_one_line(tmp_path):
    with pytest.raises(UserError, match="d.yaml: not valid YAML"):
        parse_yaml("[" * 100_000 + "]" * 100_000, "d.yaml")
    with pytest.raises(UserError, match=r"i.json: not valid JSON \(Exceeds the limit"):
        (tmp_path / "i.json").write_text("9" * 5000)
        read_json(tmp_path / "i.json", "results file")


def test_a_directory_or_missing_file_is_named(tmp_path):
    with pytest.raises(UserError, match="a directory, not a config file"):
        read_structured(tmp_path, "config file")
    with pytest.raises(UserError, match="no such config file"):
        read_structured(tmp_path / "nope.yaml", "config file")


# -- writing -------------------------------------------------------------------------------------
def test_a_symlink_target_is_refused_and_what_it_points_at_is_untouched(tmp_path):
    victim = tmp_path / "victim.json"
    victim.write_text("precious")
    link = tmp_path / "out.json"
    link.symlink_to(victim)
    with pytest.raises(UserError, match=r"out\.json: is a symbolic link"):
        atomic_write_json(link, {"a": 1})
    with pytest.raises(UserError, match=r"--out .*out\.json: is a symbolic link"):
        check_writable(link, "--out")
    with pytest.raises(UserError, match="is a symbolic link"):
        open_regular(link, os.O_APPEND)
    assert victim.read_text() == "precious" and link.is_symlink()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json", "victim.json"]


def test_a_device_or_pipe_is_never_replaced(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for write in (lambda: atomic_write_text(fifo, "x"), lambda: check_writable(fifo, "--out")):
        with pytest.raises(UserError, match="fifo: is not a regular file"):
            write()
    with pytest.raises(UserError, match="fifo: is not a regular file"):
        open_regular(fifo)  # without blocking on the pipe
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    # /dev/null is only looked at here: a broken check must not replace it on a root machine.
    with pytest.raises(UserError, match="/dev/null: is not a regular file"):
        check_writable("/dev/null", "--out")


def test_disk_full_keeps_the_old_file_and_names_the_new_one(tmp_path, monkeypatch):
    path = tmp_path / "results.json"
    atomic_write_json(path, {"old": True})

    def no_space(self, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self))

    monkeypatch.setattr(Path, "write_bytes", no_space)
    with pytest.raises(UserError) as caught:
        atomic_write_json(path, {"new": True})
    assert str(caught.value) == (
        f"{path}: could not be written (No space left on device; free some space and run it "
        "again); nothing was replaced"
    )
    monkeypatch.undo()
    assert json.loads(path.read_text()) == {"old": True}
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]


def test_long_names_fit_the_temporary_file_and_longer_ones_are_named(tmp_path):
    name = "r" * 240 + ".json"  # 245 characters: the file fits, a longer temporary name would not
    atomic_write_json(tmp_path / name, {"a": 1})
    assert [p.name for p in tmp_path.iterdir()] == [name]
    with pytest.raises(UserError, match="is 300 bytes long; file systems allow 255"):
        check_writable(tmp_path / ("r" * 300), "--out")


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_weights_and_sidecars_get_the_same_mode_as_any_file(tmp_path, umask):
    old = os.umask(umask)
    try:
        model = build_classifier("small_cnn", {"width": 0.25}, (0.5,), (0.5,))
        save_model(model, tmp_path / "model")
        atomic_write(tmp_path / "t.pt", lambda p: torch.save({"a": torch.zeros(1)}, p))
        (tmp_path / "plain").write_text("")
    finally:
        os.umask(old)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in tmp_path.iterdir()}
    assert set(modes.values()) == {0o666 & ~umask}, modes


def test_an_exporters_companion_file_gets_the_final_name_beside_it(tmp_path):
    """ONNX exporters write external weights as ``<their file name>.data`` and reference them
    by that name: written at a temporary name they were hidden and named after it."""
    final = tmp_path / "model.onnx"
    seen = []

    def write_with_companion(staged: Path) -> None:
        seen.append(staged.name)
        staged.write_text(f"graph referencing {staged.name}.data")
        Path(f"{staged}.data").write_text("weights")

    atomic_write(final, lambda tmp: staged_export(final, tmp, write_with_companion))
    assert seen == ["model.onnx"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx", "model.onnx.data"]
    assert final.read_text() == "graph referencing model.onnx.data"
