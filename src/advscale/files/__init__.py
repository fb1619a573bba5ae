"""Files advscale reads and writes, safely.

Writes (:mod:`.writing`) are atomic (a temporary file renamed over the target), never through a
symbolic link and never onto a device; outputs are checked writable before the work that fills
them. Reads (:mod:`.reading`) are bounded: size, nesting, UTF-8, and for YAML unique keys and
few aliases, so that a small hostile file cannot exhaust memory and every failure is one
:class:`~advscale.errors.UserError` naming the file.
"""

from advscale.files.reading import (
    MAX_DEPTH,
    MAX_JSON_BYTES,
    MAX_YAML_ALIASES,
    MAX_YAML_BYTES,
    MAX_YAML_VALUES,
    parse_yaml,
    read_bounded,
    read_json,
    read_structured,
    read_text,
)
from advscale.files.writing import (
    atomic_write,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    check_writable,
    open_regular,
)

__all__ = [
    "MAX_DEPTH",
    "MAX_JSON_BYTES",
    "MAX_YAML_ALIASES",
    "MAX_YAML_BYTES",
    "MAX_YAML_VALUES",
    "atomic_write",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "check_writable",
    "open_regular",
    "parse_yaml",
    "read_bounded",
    "read_json",
    "read_structured",
    "read_text",
]
