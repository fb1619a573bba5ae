"""fetch_dataset against a local HTTP server and local mirrors: downloads verified by their
decompressed content, atomic and idempotent."""

from __future__ import annotations

import gzip
import hashlib
import http.server
import json
import os
import threading
from pathlib import Path

import pytest
from idx_files import write_fashion_dir

from advscale.data import DataError, dataset_info, fetch_dataset, load_dataset
from advscale.data.fetch import REMOTE, content_sha256, sha256_file

NAMES = [f.name for f in REMOTE["fashion-mnist"].files]


class _Server:
    def __init__(self, root: Path) -> None:
        self.root, self.requests, self.cut_short = root, [], False
        server = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, directory=str(server.root), **kwargs)

            def do_GET(self):
                server.requests.append(self.path)
                if server.cut_short:
                    # Promise the whole file, send half, hang up: a dropped connection.
                    data = (server.root / self.path.lstrip("/")).read_bytes()
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data[: len(data) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                super().do_GET()

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/files/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def served(tmp_path):
    """Generated Fashion-MNIST files served at ``server.url``, with their content's SHA-256."""
    files = write_fashion_dir(tmp_path / "www" / "files")
    hashes = {n: content_sha256(files / n) for n in NAMES}
    with _Server(tmp_path / "www") as server:
        yield server, files, hashes


def _leftovers(d: Path) -> list[str]:
    return sorted(p.name for p in d.iterdir() if p.name not in NAMES)


def test_downloads_verifies_and_loads(served, tmp_path):
    server, files, hashes = served
    out = tmp_path / "out"
    paths = fetch_dataset("fashion-mnist", to=out, base_url=server.url, sha256=hashes)
    assert paths == [out / n for n in NAMES]
    for n in NAMES:
        assert (out / n).read_bytes() == (files / n).read_bytes()
    assert _leftovers(out) == []
    assert len(load_dataset("fashion-mnist", "train", out)) == 30


def test_files_present_with_right_hash_are_not_downloaded_again(served, tmp_path):
    server, _, hashes = served
    fetch_dataset("fashion-mnist", to=tmp_path / "out", base_url=server.url, sha256=hashes)
    assert len(server.requests) == 4
    lines = []
    fetch_dataset(
        "fashion-mnist",
        to=tmp_path / "out",
        base_url=server.url,
        sha256=hashes,
        progress=lines.append,
    )
    assert len(server.requests) == 4
    assert all("present, content SHA-256 ok" in line for line in lines) and len(lines) == 4


def test_file_with_wrong_content_is_replaced(served, tmp_path):
    server, files, hashes = served
    out = tmp_path / "out"
    out.mkdir()
    (out / NAMES[1]).write_bytes(b"stale")
    fetch_dataset("fashion-mnist", to=out, base_url=server.url, sha256=hashes)
    assert (out / NAMES[1]).read_bytes() == (files / NAMES[1]).read_bytes()


def test_corrupted_download_is_refused_and_nothing_half_written(served, tmp_path):
    server, files, hashes = served
    # The server now sends a damaged copy of one file.
    bad = files / NAMES[2]
    bad.write_bytes(bad.read_bytes()[:-7] + b"garbage")
    out = tmp_path / "out"
    with pytest.raises(DataError, match="SHA-256 mismatch") as e:
        fetch_dataset("fashion-mnist", to=out, base_url=server.url, sha256=hashes)
    assert NAMES[2] in str(e.value) and hashes[NAMES[2]] in str(e.value)
    assert not (out / NAMES[2]).exists()
    assert _leftovers(out) == []  # no temporary file left behind
    assert (out / NAMES[0]).read_bytes() == (files / NAMES[0]).read_bytes()


def test_dropped_connection_leaves_nothing_behind(served, tmp_path):
    server, files, hashes = served
    server.cut_short = True
    out = tmp_path / "out"
    size = (files / NAMES[0]).stat().st_size
    message = f"{NAMES[0]}: download failed.*closed after {size // 2} of {size} bytes"
    with pytest.raises(DataError, match=message):
        fetch_dataset("fashion-mnist", to=out, base_url=server.url, sha256=hashes)
    assert list(out.iterdir()) == []


def test_missing_file_on_server_is_a_clear_error(served, tmp_path):
    server, files, hashes = served
    (files / NAMES[3]).unlink()
    with pytest.raises(DataError, match=f"{NAMES[3]}: download failed.*404") as e:
        fetch_dataset("fashion-mnist", to=tmp_path / "out", base_url=server.url, sha256=hashes)
    assert server.url + NAMES[3] in str(e.value)
    assert _leftovers(tmp_path / "out") == []


def test_default_hashes_refuse_files_that_are_not_fashion_mnist(served, tmp_path):
    server, _, _ = served
    with pytest.raises(
        DataError,
        match="SHA-256 mismatch.*should hash to " + REMOTE["fashion-mnist"].files[0].content_sha256,
    ):
        fetch_dataset("fashion-mnist", to=tmp_path / "out", base_url=server.url)


def test_unknown_dataset_and_unknown_file_override(tmp_path):
    with pytest.raises(DataError, match="available: fashion-mnist"):
        fetch_dataset("imagenet", to=tmp_path)
    with pytest.raises(DataError, match="does not have"):
        fetch_dataset("fashion-mnist", to=tmp_path, sha256={"x.gz": "0" * 64})


def test_built_in_hashes_accept_the_real_files(fmnist_dir, tmp_path):
    """The installed copy (recompressed by Debian or not) counts as present: no download."""
    out = tmp_path / "out"
    out.mkdir()
    for n in NAMES:
        os.symlink(fmnist_dir / n, out / n)
    lines = []
    # Port 9 (discard) on localhost: any download attempt would fail loudly.
    fetch_dataset(
        "fashion-mnist", to=out, base_url="http://127.0.0.1:9/", progress=lines.append, timeout=2
    )
    assert len(lines) == 4 and all("present" in line for line in lines)


def test_a_recompressed_mirror_verifies_by_content(served, tmp_path):
    server, files, hashes = served
    for n in NAMES:  # the same IDX bytes, other .gz bytes
        data = gzip.decompress((files / n).read_bytes())
        (files / n).write_bytes(gzip.compress(data, compresslevel=1, mtime=12345))
        assert content_sha256(files / n) == hashes[n] != sha256_file(files / n)
    out = tmp_path / "out"
    fetch_dataset("fashion-mnist", to=out, base_url=server.url, sha256=hashes)
    assert len(load_dataset("fashion-mnist", "test", out)) == 20


def test_a_local_directory_or_file_url_is_a_mirror(fmnist_dir, tmp_path, capsys):
    """The installed copy (Debian recompresses it) verifies against the built-in hashes."""
    from advscale.cli import main

    lines = []
    paths = fetch_dataset(
        "fashion-mnist", to=tmp_path / "a", base_url=fmnist_dir, progress=lines.append
    )
    assert [p.name for p in paths] == NAMES and all("content SHA-256 ok" in x for x in lines)
    for n in NAMES:
        assert content_sha256(tmp_path / "a" / n) == content_sha256(fmnist_dir / n)
    url = Path(fmnist_dir).resolve().as_uri()
    assert (
        main(["data", "fetch", "fashion-mnist", "--to", str(tmp_path / "b"), "--base-url", url])
        == 0
    )
    assert capsys.readouterr().out.split() == [str(tmp_path / "b" / n) for n in NAMES]
    assert main(["data", "fetch", "fashion-mnist", "--to", str(tmp_path / "c"),
                 "--base-url", str(tmp_path / "nowhere")]) == 2  # fmt: skip
    assert "neither a URL nor a directory" in capsys.readouterr().err


def test_sha256_file_matches_hashlib(tmp_path):
    p = tmp_path / "f"
    p.write_bytes(b"advscale" * 1000)
    assert sha256_file(p) == hashlib.sha256(b"advscale" * 1000).hexdigest()


def test_fetched_directory_is_described_by_dataset_info(served, tmp_path):
    server, _, hashes = served
    out = tmp_path / "out"
    fetch_dataset("fashion-mnist", to=out, base_url=server.url, sha256=hashes)
    info = dataset_info("fashion-mnist", out)
    assert info["location"] == str(out)
    assert info["splits"]["train"] == {"size": 30, "class_counts": [3] * 10}
    assert info["splits"]["test"]["size"] == 20
    assert info["classes"][0] == "T-shirt/top" and info["image_size"] == [28, 28]
    json.dumps(info)  # ready to print as JSON
