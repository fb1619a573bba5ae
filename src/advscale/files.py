"""Files advscale reads and writes, safely.

Writes are atomic (a temporary file renamed over the target), never through a symbolic link
and never onto a device; outputs are checked writable before the work that fills them. Reads
are bounded: size, nesting, UTF-8, and for YAML unique keys and few aliases, so that a small
hostile file cannot exhaust memory and every failure is one :class:`UserError` naming the file.
"""

from __future__ import annotations

import errno
import itertools
import json
import os
import secrets
import stat
import tempfile
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from advscale.errors import UserError

#: Largest YAML file read (configs, sweep files and model specs are a few kB).
MAX_YAML_BYTES = 2**20
#: Largest JSON file read (the results files of large sweeps included).
MAX_JSON_BYTES = 256 * 2**20
#: Deepest nesting of lists and mappings in a JSON or YAML file.
MAX_DEPTH = 100
#: Aliases (``*name``) a YAML file may use, and the values it may hold once they are expanded:
#: nested aliases ("billion laughs") would otherwise grow a 1 kB file into gigabytes.
MAX_YAML_ALIASES = 100
MAX_YAML_VALUES = 100_000


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
        kind = "a directory" if path.is_dir() else "a file"
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


def read_bounded(
    path: str | os.PathLike,
    what: str,
    *,
    limit: int,
    error: type[Exception] | None = None,
) -> bytes:
    """The bytes of ``path``, refused when it holds more than ``limit`` (``/dev/zero`` too).

    Raises:
        ``error`` (default UserError): missing, a directory, unreadable or too large.
    """
    error = error or UserError
    path = Path(path)
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size > limit:
                raise error(f"{path}: larger than {_size(limit)}: not a {what}")
            # In blocks: read(limit + 1) would allocate the whole bound at once; a device
            # (/dev/zero) or a pipe has no size to look at first.
            data = bytearray()
            while len(data) <= limit and (block := f.read(min(2**20, limit + 1 - len(data)))):
                data += block
    except (FileNotFoundError, NotADirectoryError):
        raise error(f"{path}: no such {what}") from None
    except IsADirectoryError:
        raise error(f"{path}: a directory, not a {what}") from None
    except OSError as e:
        raise error(f"{path}: cannot read the {what} ({e.strerror or e})") from None
    if len(data) > limit:
        raise error(f"{path}: larger than {_size(limit)}: not a {what}")
    return bytes(data)


def _size(n: int) -> str:
    return f"{n // 2**20} MiB" if n >= 2**20 else f"{n} bytes"


def read_text(
    path: str | os.PathLike,
    what: str,
    *,
    limit: int = MAX_YAML_BYTES,
    error: type[Exception] | None = None,
) -> str:
    """The UTF-8 text of ``path`` (at most ``limit`` bytes; a byte-order mark is dropped).

    Raises:
        ``error`` (default UserError): as :func:`read_bounded`, or a byte that is not UTF-8
            (a Latin-1 file), named with its offset.
    """
    error = error or UserError
    data = read_bounded(path, what, limit=limit, error=error)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise error(
            f"{path}: not UTF-8 text (byte 0x{data[e.start]:02x} at offset {e.start}); "
            f"save the {what} as UTF-8"
        ) from None


def read_json(
    path: str | os.PathLike,
    what: str,
    *,
    error: type[Exception] | None = None,
    limit: int = MAX_JSON_BYTES,
) -> Any:
    """The parsed content of the JSON file ``path``, read with a size bound (``limit`` bytes)
    and a nesting bound (:data:`MAX_DEPTH`); every failure is one ``error`` (default
    UserError) naming the file. ``what`` names the file in the error ("results file")."""
    return read_structured(path, what, error=error, fmt="json", limit=limit)


def read_structured(
    path: str | os.PathLike,
    what: str,
    *,
    error: type[Exception] | None = None,
    fmt: str | None = None,
    limit: int | None = None,
) -> Any:
    """The parsed content of the JSON or YAML file ``path``; a missing file or a parse error
    becomes one ``error`` (default :class:`advscale.errors.UserError`) naming the file.

    ``what`` names the file in the error ("sweep file", "results file"). ``fmt`` is "json" or
    "yaml"; by default a ``.json`` suffix means JSON and anything else YAML. An empty YAML file
    reads as None. Reading is bounded: at most ``limit`` bytes (default :data:`MAX_YAML_BYTES`
    or :data:`MAX_JSON_BYTES`), UTF-8 text, :data:`MAX_DEPTH` levels of nesting; YAML keys
    must be unique and aliases few (see :func:`parse_yaml`).

    Example:
        >>> read_structured("configs/pgd.yaml", "config file")["recipe"]  # doctest: +SKIP
    """
    error = error or UserError
    path = Path(path)
    fmt = fmt or ("json" if path.suffix.lower() == ".json" else "yaml")
    if limit is None:
        limit = MAX_JSON_BYTES if fmt == "json" else MAX_YAML_BYTES
    text = read_text(path, what, limit=limit, error=error)
    if fmt == "json":
        try:
            value = json.loads(text)
        except json.JSONDecodeError as e:
            raise error(f"{path}: not valid JSON ({e})") from None
        except (ValueError, RecursionError) as e:  # an integer of 5000 digits, deep nesting
            raise error(f"{path}: not valid JSON ({_first_line(e)})") from None
        depth = _depth(value)
        if depth > MAX_DEPTH:
            raise error(f"{path}: nested {depth} levels deep; at most {MAX_DEPTH} are read")
        return value
    return parse_yaml(text, str(path), error=error)


def parse_yaml(text: str, source: str, *, error: type[Exception] | None = None) -> Any:
    """``text`` parsed as YAML with PyYAML's safe loader, strictly: a duplicate key, more than
    :data:`MAX_YAML_ALIASES` aliases, more than :data:`MAX_YAML_VALUES` values once aliases
    are expanded, or more than :data:`MAX_DEPTH` levels of nesting are refused.

    Raises:
        ``error`` (default UserError): ``source: not valid YAML (line L, column C: problem)``.
    """
    import yaml

    error = error or UserError
    depth = _bracket_depth(text)
    if depth > MAX_DEPTH:  # PyYAML's scanner takes quadratic time in flow nesting
        raise error(f"{source}: not valid YAML (nested {depth} levels deep; at most {MAX_DEPTH})")
    try:
        return yaml.load(text, Loader=_strict_loader())  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        problem = getattr(e, "problem", None) or _first_line(e)
        raise error(f"{source}: not valid YAML ({where}{problem})") from None
    except (ValueError, TypeError, RecursionError) as e:  # an int of 5000 digits, deep nesting
        raise error(f"{source}: not valid YAML ({_first_line(e)})") from None


_BRACKETS = {ord(c): c for c in "[]{}"}


def _bracket_depth(text: str) -> int:
    """How deep ``[`` and ``{`` nest in ``text`` (quoted ones counted too: an upper bound)."""
    only = text.translate(defaultdict(lambda: None, _BRACKETS))
    steps = (1 if c in "[{" else -1 for c in only)
    return max(itertools.accumulate(steps, initial=0))


def _first_line(e: BaseException) -> str:
    if isinstance(e, RecursionError):
        return "nested too deeply"
    lines = str(e).strip().splitlines()
    # "Exceeds the limit (4300 digits) for integer string conversion...; use sys.set_..."
    return lines[0].split("; use ")[0] if lines else type(e).__name__


def _depth(value: Any) -> int:
    """Nesting depth of parsed JSON (iterative: no recursion limit to hit)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, dict | list):
            deepest = max(deepest, d)
            if d <= MAX_DEPTH:
                stack.extend((c, d + 1) for c in (v.values() if isinstance(v, dict) else v))
    return deepest


_LOADER: Any = None


def _strict_loader() -> Any:
    """PyYAML's SafeLoader, refusing duplicate keys and bounding aliases (built once, lazily:
    importing yaml is not free)."""
    global _LOADER
    if _LOADER is not None:
        return _LOADER
    import yaml
    from yaml.composer import ComposerError
    from yaml.constructor import ConstructorError

    class StrictLoader(yaml.SafeLoader):
        def compose_node(self, parent: Any, index: Any) -> Any:
            if self.check_event(yaml.AliasEvent):
                self._aliases = getattr(self, "_aliases", 0) + 1
                if self._aliases > MAX_YAML_ALIASES:
                    raise ComposerError(
                        None,
                        None,
                        f"more than {MAX_YAML_ALIASES} aliases",
                        self.peek_event().start_mark,
                    )
            # Refused at the bound, before Python's recursion limit (whose unwinding is slow).
            self._depth = getattr(self, "_depth", 0) + 1
            if self._depth > MAX_DEPTH:
                raise ComposerError(
                    None,
                    None,
                    f"nested more than {MAX_DEPTH} levels deep",
                    self.peek_event().start_mark,
                )
            try:
                return super().compose_node(parent, index)
            finally:
                self._depth -= 1

        def get_single_node(self) -> Any:
            node = super().get_single_node()
            if node is not None:
                _check_expanded(node, {}, set(), 1)
            return node

        def construct_mapping(self, node: Any, deep: bool = False) -> Any:
            if isinstance(node, yaml.MappingNode):
                seen: set[Any] = set()
                for key_node, _ in node.value:
                    if key_node.tag == "tag:yaml.org,2002:merge":
                        continue  # "<<: *base" keys are meant to be overridden
                    key = self.construct_object(key_node, deep=True)
                    try:
                        duplicate = key in seen
                        seen.add(key)
                    except TypeError:
                        continue  # unhashable: refused by the base constructor
                    if duplicate:
                        raise ConstructorError(
                            None, None, f"duplicate key {key!r}", key_node.start_mark
                        )
            return super().construct_mapping(node, deep)

    def _check_expanded(node: Any, sizes: dict[int, int], open_: set[int], depth: int) -> int:
        """Values under ``node`` with every alias expanded (refused past the bounds)."""
        if id(node) in sizes:
            return sizes[id(node)]
        if id(node) in open_:
            raise ComposerError(None, None, "a recursive alias", node.start_mark)
        if depth > MAX_DEPTH:
            raise ComposerError(
                None, None, f"nested more than {MAX_DEPTH} levels deep", node.start_mark
            )
        children = node.value if isinstance(node, yaml.SequenceNode) else []
        if isinstance(node, yaml.MappingNode):
            children = [n for pair in node.value for n in pair]
        open_.add(id(node))
        total = 1
        for child in children:
            total += _check_expanded(child, sizes, open_, depth + 1)
            if total > MAX_YAML_VALUES:
                raise ComposerError(
                    None,
                    None,
                    f"more than {MAX_YAML_VALUES} values once its aliases are expanded",
                    node.start_mark,
                )
        open_.discard(id(node))
        sizes[id(node)] = total
        return total

    _LOADER = StrictLoader
    return _LOADER


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
