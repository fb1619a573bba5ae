"""Download datasets from their official location or a mirror, verified by SHA-256.

What is verified is the content, the SHA-256 of the decompressed IDX bytes, not the .gz bytes
served: a mirror that recompressed the files (Debian's ``dataset-fashion-mnist`` does) holds the
same data and verifies. A mirror may be a URL (``https://``, ``file://``) or a local directory.

Example:
    >>> from advscale.data import fetch_dataset
    >>> fetch_dataset("fashion-mnist", to="~/data/fashion-mnist")  # doctest: +SKIP
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import os
import tempfile
import urllib.error
import urllib.request
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from advscale.data.base import DataError
from advscale.files import check_writable


@dataclass(frozen=True)
class RemoteFile:
    """One file to download: its name, the SHA-256 of its gunzipped content (what is verified),
    and of the .gz bytes the official mirrors serve (for reference: a recompressed copy differs).
    """

    name: str
    content_sha256: str
    gz_sha256: str | None = None


@dataclass(frozen=True)
class RemoteDataset:
    name: str
    mirrors: tuple[str, ...]
    files: tuple[RemoteFile, ...]


REMOTE = {
    "fashion-mnist": RemoteDataset(
        "fashion-mnist",
        mirrors=(
            "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
            "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
        ),
        # Content hashes are of the gunzipped IDX files; the .gz files they come from match
        # the MD5s published in the Fashion-MNIST README.
        files=(
            RemoteFile(
                "train-images-idx3-ubyte.gz",
                "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
                "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
            ),
            RemoteFile(
                "train-labels-idx1-ubyte.gz",
                "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
                "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
            ),
            RemoteFile(
                "t10k-images-idx3-ubyte.gz",
                "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
                "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
            ),
            RemoteFile(
                "t10k-labels-idx1-ubyte.gz",
                "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
                "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
            ),
        ),
    ),
}
_CHUNK = 1 << 20


def sha256_file(path: str | os.PathLike, gunzip: bool = False) -> str:
    """Hex SHA-256 of a file's bytes, or of its gunzipped content with ``gunzip``."""
    h = hashlib.sha256()
    with (gzip.open if gunzip else open)(path, "rb") as f:
        while block := f.read(_CHUNK):
            h.update(block)
    return h.hexdigest()


def content_sha256(path: str | os.PathLike) -> str | None:
    """SHA-256 of a .gz file's decompressed content; None when it is no valid gzip data."""
    try:
        return sha256_file(path, gunzip=True)
    except (OSError, EOFError, zlib.error):
        return None


def _is_present(path: Path, spec: RemoteFile) -> bool:
    return path.is_file() and content_sha256(path) == spec.content_sha256


def mirror_url(base: str | os.PathLike) -> str:
    """``base`` as a URL prefix ending in "/": a local directory becomes a ``file://`` URL."""
    text = os.fspath(base)
    if "://" not in text:
        path = Path(text).expanduser()
        if not path.is_dir():
            raise DataError(f"--base-url {text!r}: neither a URL nor a directory")
        text = path.resolve().as_uri()
    return text if text.endswith("/") else text + "/"


def _download(
    url: str, dest: Path, expected: str, timeout: float, progress: Callable[[str], None] | None
) -> None:
    """Stream ``url`` into a temporary file beside ``dest``; rename it only if its content's
    hash matches."""
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        size = 0
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:
            announced = response.headers.get("Content-Length")
            while block := response.read(_CHUNK):
                out.write(block)
                size += len(block)
            out.flush()
            os.fsync(out.fileno())
        if announced is not None and announced.isdigit() and size != int(announced):
            raise ConnectionError(f"connection closed after {size} of {announced} bytes")
        got = content_sha256(tmp)
        if got != expected:
            raise DataError(
                f"{dest.name}: SHA-256 mismatch for {url} ({size} bytes): its decompressed "
                f"content should hash to {expected}, got "
                f"{got or 'no valid gzip data'}. The download is corrupt or the server sent "
                "another file; nothing was written."
            )
        os.replace(tmp, dest)
        if progress:
            progress(f"{dest}: {size} bytes, content SHA-256 ok")
    finally:
        if tmp.exists():
            tmp.unlink()


def fetch_dataset(
    name: str,
    to: str | os.PathLike,
    base_url: str | None = None,
    *,
    sha256: Mapping[str, str] | None = None,
    timeout: float = 60.0,
    progress: Callable[[str], None] | None = None,
) -> list[Path]:
    """Download dataset ``name`` (see ``REMOTE``) into directory ``to``; return the file paths.

    Each file is streamed to a temporary file in ``to``, its decompressed content checked
    against its SHA-256 and only then renamed into place, so ``to`` never holds a partial or
    unverified file. Files already present with the right content (however compressed) are
    kept; other files of the same name are replaced. Without ``base_url`` the official mirrors
    are tried in turn when one cannot be reached; a hash mismatch stops at once.

    Args:
        name: dataset name, e.g. ``"fashion-mnist"``.
        to: target directory (created if needed).
        base_url: get the files from this mirror instead of the official ones: a URL prefix
            (``https://...``, ``file:///...``) or a local directory.
        sha256: expected SHA-256 of the decompressed content per file name, replacing the
            built-in ones (for mirrors of other files, and tests).
        timeout: seconds to wait for the server before giving up on a mirror.
        progress: called with one line per file.

    Raises:
        DataError: unknown dataset, unreachable server or SHA-256 mismatch (naming the file).
        UserError: ``to`` is a file or cannot be written (before any download).
    """
    if name not in REMOTE:
        raise DataError(f"no download known for dataset {name!r}; available: {', '.join(REMOTE)}")
    remote = REMOTE[name]
    files: Sequence[RemoteFile] = remote.files
    if sha256 is not None:
        unknown = set(sha256) - {f.name for f in files}
        if unknown:
            raise DataError(f"sha256 names files {sorted(unknown)} that {name} does not have")
        files = [RemoteFile(f.name, sha256[f.name]) if f.name in sha256 else f for f in files]
    mirrors = tuple(mirror_url(m) for m in ((base_url,) if base_url else remote.mirrors))
    target = check_writable(Path(to).expanduser(), "target directory", directory=True)
    target.mkdir(parents=True, exist_ok=True)
    paths = []
    for spec in files:
        dest = target / spec.name
        paths.append(dest)
        if _is_present(dest, spec):
            if progress:
                progress(f"{dest}: present, content SHA-256 ok")
            continue
        failures = []
        for mirror in mirrors:
            url = mirror + spec.name
            try:
                _download(url, dest, spec.content_sha256, timeout, progress)
                break
            except urllib.error.HTTPError as e:
                failures.append(f"{url}: HTTP {e.code} {e.reason}")
            except (urllib.error.URLError, http.client.HTTPException, OSError) as e:
                failures.append(
                    f"{url}: {getattr(e, 'reason', None) or f'{type(e).__name__}: {e}'}"
                )
        else:
            raise DataError(
                f"{spec.name}: download failed from every source: " + "; ".join(failures)
            )
    return paths
