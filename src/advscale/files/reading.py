"""Reading files boundedly: size, nesting, UTF-8, and for YAML unique keys and few aliases, so
that a small hostile file cannot exhaust memory or time, and every failure is one UserError
naming the file.
"""

from __future__ import annotations

import itertools
import json
import os
import stat
from collections import defaultdict
from pathlib import Path
from typing import Any

from advscale.errors import UserError

#: Largest YAML file read (configs, sweep files and model specs are a few kB).
MAX_YAML_BYTES = 2**20
#: Largest JSON file read (the results files of large sweeps included).
MAX_JSON_BYTES = 64 * 2**20
#: Deepest nesting of lists and mappings in a JSON or YAML file.
MAX_DEPTH = 100
#: Aliases (``*name``) a YAML file may use, and the values it may hold once they are expanded:
#: nested aliases ("billion laughs") would otherwise grow a 1 kB file into gigabytes.
MAX_YAML_ALIASES = 100
MAX_YAML_VALUES = 100_000


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
        # A FIFO or socket would block open() until a writer comes: never wait on one.
        if stat.S_ISFIFO(mode := os.stat(path).st_mode) or stat.S_ISSOCK(mode):
            raise error(f"{path}: not a regular file (a pipe or socket): not a {what}")
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
        except RecursionError:
            raise error(f"{path}: nested deeper than {MAX_DEPTH} levels; not a {what}") from None
        except ValueError as e:  # an integer of 5000 digits
            raise error(f"{path}: not valid JSON ({_first_line(e)})") from None
        depth = _depth(value)
        if depth > MAX_DEPTH:
            raise error(f"{path}: nested deeper than {MAX_DEPTH} levels ({depth}); not a {what}")
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
    except (Exception, RecursionError) as e:  # noqa: BLE001 - PyYAML's constructors raise
        # ValueError (an int of 5000 digits), IndexError ("!!float" alone) and others.
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
