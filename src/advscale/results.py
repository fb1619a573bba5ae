"""The one results schema every advscale command writes and every report reads.

A results file is JSON::

    {
      "schema": "advscale.results",
      "version": 1,
      "kind": "eval" | "train" | "finetune" | "compare" | "transfer_matrix" | "sweep" | "demo",
      "created": "2026-11-22T15:00:00+00:00",
      "complete": true,            # false while a command is still running or failed part-way
      "environment": {...},        # versions and hardware (advscale.utils.environment_info)
      "config": {...},             # what produced the numbers
      "records": [ {...}, ... ],   # one flat dict per measured point (see below)
      "summary": {...}             # kind-specific roll-up (optional)
    }

Every record says what it measures in ``"record"`` (one of :data:`RECORD_KINDS`: robust,
label_leak, masking, event, epoch, compare, transfer, capacity, other); ``save`` fills it in with
:func:`record_kind` where the producer did not, and files written before records carried it get
it from the same function when read. A file written without ``kind`` gets it from
:func:`infer_kind`.

Robust-accuracy records (``"record": "robust"``) carry at least ``attack`` (name), ``eps`` (pixel
levels on the 0-255 scale, so 8 means 8/255) and ``accuracy`` (top-1, 0-1). ``eps_unit`` is
always ``"1/255"``.
"""

from __future__ import annotations

import datetime as _dt
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from advscale.errors import UserError
from advscale.files import read_json
from advscale.utils import atomic_write_json, environment_info

SCHEMA = "advscale.results"
SCHEMA_VERSION = 1
KINDS = ("eval", "train", "finetune", "compare", "transfer_matrix", "sweep", "demo")
EPS_UNIT = "1/255"
# Bounds on what a results file may hold: advscale writes flat records a few levels deep, and a
# transfer matrix of many models stays far below this size.
MAX_RESULTS_BYTES = 256 * 2**20


class ResultsError(UserError):
    """A results file that cannot be read: wrong schema, newer version, missing keys."""


@dataclass
class Results:
    """In-memory form of a results file. ``save`` writes atomically."""

    kind: str
    records: list[dict[str, Any]] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    environment: dict[str, Any] = field(default_factory=environment_info)
    complete: bool = True
    created: str = field(
        default_factory=lambda: _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    )
    version: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ResultsError(f"unknown results kind {self.kind!r}; allowed: {', '.join(KINDS)}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "version": self.version,
            "kind": self.kind,
            "created": self.created,
            "complete": self.complete,
            "environment": self.environment,
            "config": self.config,
            "records": [_with_record_kind(self.kind, r) for r in self.records],
            "summary": self.summary,
        }

    def save(self, path: str | os.PathLike) -> Path:
        return atomic_write_json(path, self.to_dict())

    def add(self, **record: Any) -> dict[str, Any]:
        self.records.append(record)
        return record

    def select(self, **where: Any) -> list[dict[str, Any]]:
        """Records whose fields equal every ``key=value`` given."""
        return [r for r in self.records if all(r.get(k) == v for k, v in where.items())]


def load_results(path: str | os.PathLike) -> Results:
    """Read and validate a results file written by any advscale command.

    A file written before results carried ``kind`` gets it from :func:`infer_kind`.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "results.json"
    raw = read_json(path, "results file", error=ResultsError, limit=MAX_RESULTS_BYTES)
    if not isinstance(raw, dict) or raw.get("schema") != SCHEMA:
        raise ResultsError(f'{path}: not an advscale results file (expected "schema": "{SCHEMA}")')
    version = raw.get("version")
    if not isinstance(version, int) or version > SCHEMA_VERSION:
        raise ResultsError(
            f"{path}: results schema version {version!r} is newer than this advscale reads "
            f"({SCHEMA_VERSION}); upgrade advscale"
        )
    if "records" not in raw:
        raise ResultsError(f"{path}: missing key 'records'")
    if not isinstance(raw["records"], list):
        raise ResultsError(
            f"{path}: 'records' must be a list of objects, got {_type(raw['records'])}"
        )
    for i, r in enumerate(raw["records"]):
        if not isinstance(r, dict):
            raise ResultsError(f"{path}: record {i} must be an object, got {_type(r)}")
    for key in ("config", "summary", "environment"):
        if not isinstance(raw.get(key, {}), dict):
            raise ResultsError(f"{path}: '{key}' must be an object, got {_type(raw[key])}")
    for key, kind in (("created", str), ("complete", bool), ("kind", str)):
        if key in raw and raw[key] is not None and not isinstance(raw[key], kind):
            raise ResultsError(f"{path}: '{key}' must be a {kind.__name__}, got {_type(raw[key])}")
    if raw.get("kind") is not None and raw["kind"] not in KINDS:
        raise ResultsError(
            f"{path}: unknown results kind {raw['kind']!r}; allowed: {', '.join(KINDS)}"
        )
    return Results(
        kind=raw.get("kind") or infer_kind(raw),
        records=list(raw["records"]),
        config=raw.get("config", {}),
        summary=raw.get("summary", {}),
        environment=raw.get("environment", {}),
        complete=bool(raw.get("complete", True)),
        created=raw.get("created", ""),
        version=version,
    )


def _type(v: Any) -> str:
    return "null" if v is None else type(v).__name__


def accuracy_fields(value: Any, inside: bool = False) -> Iterator[tuple[str, Any]]:
    """``(dotted key, number)`` for every number ``value`` holds under an accuracy key
    (``accuracy``, ``*_accuracy``, ``accuracy_*``, ``worst_case``): shares that must be finite
    and in [0, 1]. Nesting is bounded by :func:`advscale.files.read_json`."""
    items = value.items() if isinstance(value, dict) else enumerate(value)
    for k, v in items:
        key = str(k)
        here = inside or _is_accuracy_key(key)
        if isinstance(v, (dict, list)):
            yield from ((f"{key}.{sub}", x) for sub, x in accuracy_fields(v, here))
        elif here and is_number(v):
            yield key, v


def _is_accuracy_key(key: str) -> bool:
    return (
        key in ("accuracy", "worst_case")
        or key.endswith("_accuracy")
        or key.startswith("accuracy_")
    )


def bad_accuracy(value: Any) -> tuple[str, Any] | None:
    """The first accuracy field of ``value`` (:func:`accuracy_fields`) that is not finite or
    lies outside [0, 1], or None."""
    for key, v in accuracy_fields(value):
        if not (0 <= v <= 1 and math.isfinite(v)):  # NaN fails the bounds; big ints too
            return key, v
    return None


def infer_kind(raw: dict[str, Any]) -> str:
    """The ``kind`` of a results file written without one, from the command named in its config
    (every command records it) or, failing that, from its records."""
    config = raw.get("config") or {}
    command = str(config.get("command") or "").replace("-", "_")
    if command in KINDS:
        return command
    records = [r for r in raw.get("records") or [] if isinstance(r, dict)]
    if any("source" in r and "target" in r for r in records):
        return "transfer_matrix"
    if any("variant" in r for r in records):
        return "sweep"
    if any("method" in r and "mode" in r for r in records):
        return "compare"
    if "finetune" in config:
        return "finetune"
    if any("epoch" in r or r.get("type") for r in records):
        return "train"
    return "eval"


# What a record measures, where one results file holds several kinds of record.
RECORD_KINDS = (
    "robust",  # accuracy under one attack at one ε
    "label_leak",  # clean vs one-step accuracy of a model trained on one-step examples
    "masking",  # one gradient-masking check
    "event",  # something that happened in training (catastrophic overfitting, a NaN loss)
    "epoch",  # per-epoch training metrics
    "compare",  # one (method, mode, ε) point of a compare run
    "transfer",  # one (source, target, attack, ε) cell of a transfer matrix
    "capacity",  # one point of a sweep
    "other",
)
RECORD_KIND_KEY = "record"


def record_kind(kind: str, record: dict[str, Any]) -> str:
    """What ``record`` of a results file of ``kind`` measures: one of :data:`RECORD_KINDS`.

    A record's explicit ``"record"`` field wins; records written without one are classified
    here, once, from the file's kind and the record's fields.
    """
    explicit = record.get(RECORD_KIND_KEY)
    if explicit in RECORD_KINDS:
        return explicit
    if kind == "sweep":
        return "capacity"
    if kind == "transfer_matrix":
        return "transfer"
    if "event" in record or record.get("type") == "event":
        return "event"
    if "epoch" in record and "attack" not in record:
        return "epoch"
    if kind == "compare" or ("method" in record and "seconds" in record):
        return "compare"
    if (
        record.get("check") == "label_leak"
        or record.get("kind") == "label_leak"
        or any(k.startswith("label_leak") or k in ("leaked", "leak") for k in record)
    ):
        return "label_leak"
    if record.get("kind") in ("masking", "masking_check") or (
        "check" in record and ("passed" in record or "ok" in record or "warning" in record)
    ):
        return "masking"
    if "attack" in record and is_number(record.get("eps")) and is_number(record.get("accuracy")):
        return "robust"
    if "epoch" in record:
        return "epoch"
    return "other"


def _with_record_kind(kind: str, record: Any) -> Any:
    """``record`` as a results file stores it: with its explicit ``"record"`` kind."""
    if not isinstance(record, dict) or RECORD_KIND_KEY in record:
        return record
    return {**record, RECORD_KIND_KEY: record_kind(kind, record)}


def is_number(v: Any) -> bool:
    """A real number (an int or float, not a bool)."""
    return isinstance(v, (int, float)) and not isinstance(v, bool)
