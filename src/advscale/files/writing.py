"""Writing files safely: atomically (a temporary file renamed over the target), never through a
symbolic link and never onto a device; outputs checked writable before the work that fills them.
"""

from __future__ import annotations

import errno
import json
import os
import secrets
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from advscale.errors import UserError


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Write ``path`` so that it is either the old file or the complete new one, never half.

    ``write`` receives a temporary path in the same directory; it is fsynced and renamed over
    ``path`` only after ``write`` returns. The new file gets the mode a plain ``open()`` gives
    (0666 less the umask), whatever ``write`` did to the temporary file.

    Raises:
        UserError: ``path`` is a symbolic link or exists as anything but a regular file (a
            device, a directory), or the write failed (disk full, name too long, no
            permission); an existing file at ``path`` is then untouched.
    """
    path = Path(path)
    _refuse_non_regular(path)
    tmp_path = path.parent / _temp_name(path.name)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # O_EXCL | O_NOFOLLOW: a link planted at the temporary name is never followed.
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(tmp_path, flags, 0o666)  # the kernel applies the umask
    except OSError as e:
        raise _write_error(path, e) from None
    mode = stat.S_IMODE(os.fstat(fd).st_mode)
    os.close(fd)
    try:
        try:
            write(tmp_path)
            # Some writers (safetensors) replace the file they are given, with mode 0600.
            os.chmod(tmp_path, mode, follow_symlinks=False)
            with open(tmp_path, "rb+") as f:
                os.fsync(f.fileno())
        except OSError as e:
            raise _write_error(path, e) from None
        except UserError:
            raise  # the writer's own refusal (an export that does not match, say)
        except Exception as e:
            # torch.save and others report a full disk without an errno.
            if _nearly_full(path.parent):
                raise _write_error(path, OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))) from e
            raise
        _refuse_non_regular(path)  # appeared while writing
        os.replace(tmp_path, path)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    finally:
        if os.path.lexists(tmp_path):
            tmp_path.unlink()
    return path


def _temp_name(name: str) -> str:
    """A hidden temporary name beside ``name`` that fits the file system's 255-byte limit."""
    stem = name
    while len(os.fsencode(stem)) > 200:
        stem = stem[: len(stem) // 2]
    return f".{stem}.{secrets.token_hex(6)}.tmp"


def _write_error(path: Path, e: OSError) -> UserError:
    reason = e.strerror or str(e)
    if e.errno == errno.ENAMETOOLONG:
        reason += "; choose a shorter name"
    elif e.errno in (errno.ENOSPC, errno.EDQUOT):
        reason += "; free some space and run it again"
    return UserError(f"{path}: could not be written ({reason}); nothing was replaced")


def _nearly_full(directory: Path) -> bool:
    try:
        st = os.statvfs(directory)
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < 2**20


def _refuse_non_regular(path: Path, what: str | None = None) -> None:
    """Refuse to write ``path`` when it is a symbolic link or exists as anything but a regular
    file: writing through a link changes a file outside the run, and renaming over a device
    (``/dev/null``, as root) replaces the device itself."""
    name = f"{what} {path}" if what else str(path)
    try:
        st = os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return
    except OSError as e:
        raise UserError(f"{name}: cannot be written ({e.strerror})") from None
    if stat.S_ISLNK(st.st_mode):
        raise UserError(
            f"{name}: is a symbolic link; advscale does not write through links "
            "(remove the link or give the real path)"
        )
    if stat.S_ISDIR(st.st_mode):
        raise UserError(f"{name}: is a directory, expected a file")
    if not stat.S_ISREG(st.st_mode):
        raise UserError(
            f"{name}: is not a regular file (a device, pipe or socket); give the path of a "
            "file to write"
        )


def open_regular(path: str | os.PathLike, flags: int = 0) -> int:
    """A file descriptor on the regular file ``path`` (created with the umask's mode), opened
    for reading and writing without following a link (``O_NOFOLLOW``); ``flags`` adds e.g.
    ``O_APPEND``. For files kept open (a lock, a log): others are written atomically.

    Raises:
        UserError: ``path`` is a link, a device or a directory, or cannot be opened.
    """
    path = Path(path)
    _refuse_non_regular(path)
    try:
        fd = os.open(
            path,
            os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK | flags,
            0o666,
        )
    except OSError as e:
        if e.errno == errno.ELOOP:
            _refuse_non_regular(path)
        raise _write_error(path, e) from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):  # replaced by a device after the check
        os.close(fd)
        _refuse_non_regular(path)
    os.set_blocking(fd, True)
    return fd


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Atomically write ``data`` to ``path``."""
    return atomic_write(path, lambda p: p.write_bytes(data))


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Atomically write UTF-8 ``text`` to ``path``."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Atomically write ``obj`` as indented JSON."""
    return atomic_write_text(
        path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n"
    )


def check_writable(path: str | os.PathLike, what: str, *, directory: bool = False) -> Path:
    """Refuse, before any work starts, an output ``path`` that could not be written.

    ``path`` is a file (or, with ``directory``, a directory) that may not exist yet: its nearest
    existing ancestor must be a directory in which a file can be created, each name in it must
    fit the file system, and an existing ``path`` must be of the right kind (a file output:
    a regular file, not a link or a device). Nothing is left behind. ``what`` names the output
    in the error ("--out", "run directory").

    Raises:
        UserError: naming ``what``, ``path`` and the reason.
    """
    path = Path(path)
    _check_name_lengths(path, what)
    if path.exists() and path.is_dir() != directory:
        kind = "a directory" if path.is_dir() else "a file" if path.is_file() else "a device"
        raise UserError(
            f"{what} {path}: is {kind}, expected a {'directory' if directory else 'file'}"
        )
    if not directory:
        _refuse_non_regular(path, what)
    parent = path if directory and path.exists() else path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise UserError(f"{what} {path}: cannot be created ({parent} is not a directory)")
    try:
        fd, probe = tempfile.mkstemp(prefix=".advscale-probe-", dir=parent)
    except OSError as e:
        raise UserError(f"{what} {path}: not writable ({parent}: {e.strerror})") from None
    os.close(fd)
    os.unlink(probe)
    return path


def _check_name_lengths(path: Path, what: str) -> None:
    """Refuse a name longer than the file system takes (255 bytes on most)."""
    for part in path.parts:
        size = len(os.fsencode(part))
        if size > 255:
            raise UserError(
                f"{what} {path}: the name {part[:24]}... is {size} bytes long; file systems "
                "allow 255: choose a shorter name"
            )


def _json_default(obj: Any) -> Any:
    import numpy as np
    import torch

    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, torch.Tensor):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")
