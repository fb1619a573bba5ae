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

Robust-accuracy records (``kind`` eval and wherever accuracy under attack is measured) carry at
least ``attack`` (name), ``eps`` (pixel levels on the 0-255 scale, so 8 means 8/255) and
``accuracy`` (top-1, 0-1). ``eps_unit`` is always ``"1/255"``.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from advscale.errors import UserError
from advscale.utils import atomic_write_json, environment_info

SCHEMA = "advscale.results"
SCHEMA_VERSION = 1
KINDS = ("eval", "train", "finetune", "compare", "transfer_matrix", "sweep", "demo")
EPS_UNIT = "1/255"


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
            "records": self.records,
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
    """Read and validate a results file written by any advscale command."""
    path = Path(path)
    if path.is_dir():
        path = path / "results.json"
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise ResultsError(f"{path}: no such results file") from None
    except json.JSONDecodeError as e:
        raise ResultsError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(raw, dict) or raw.get("schema") != SCHEMA:
        raise ResultsError(f'{path}: not an advscale results file (expected "schema": "{SCHEMA}")')
    version = raw.get("version")
    if not isinstance(version, int) or version > SCHEMA_VERSION:
        raise ResultsError(
            f"{path}: results schema version {version!r} is newer than this advscale reads "
            f"({SCHEMA_VERSION}); upgrade advscale"
        )
    for key in ("kind", "records"):
        if key not in raw:
            raise ResultsError(f"{path}: missing key {key!r}")
    return Results(
        kind=raw["kind"],
        records=list(raw["records"]),
        config=raw.get("config", {}),
        summary=raw.get("summary", {}),
        environment=raw.get("environment", {}),
        complete=bool(raw.get("complete", True)),
        created=raw.get("created", ""),
        version=version,
    )


def records_table(records: Iterable[dict[str, Any]], columns: list[str]) -> list[list[str]]:
    """Rows of formatted cells for ``columns`` (floats in [0, 1] named like accuracies as %)."""
    rows = []
    for r in records:
        row = []
        for c in columns:
            v = r.get(c, "")
            if isinstance(v, float):
                row.append(
                    f"{100 * v:.1f}" if ("acc" in c or c in {"ratio", "rate"}) else f"{v:.3g}"
                )
            else:
                row.append(str(v))
        rows.append(row)
    return rows
