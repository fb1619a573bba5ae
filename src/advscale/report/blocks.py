"""The building blocks of a report, independent of its format: tables, plots, text, sections,
and how one value is shown in a table cell."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from advscale.report import plots
from advscale.report.labels import column_label
from advscale.results import RECORD_KIND_KEY

# Widest table a page shows side by side; wider ones are split (the first column repeated).
MAX_COLUMNS = 10


@dataclass
class Table:
    """A table of already formatted cells (``columns`` are the headers a reader sees)."""

    columns: list[str]
    rows: list[list[str]]
    caption: str = ""

    def transposed(self, header: str = "") -> Table:
        """One row per column (header, then the cells of each row): a one-record table read
        down the page."""
        rows = [[c] + [row[i] for row in self.rows] for i, c in enumerate(self.columns)]
        return Table([header or "field", *("value" for _ in self.rows)], rows, self.caption)

    def parts(self, max_columns: int = MAX_COLUMNS) -> list[Table]:
        """The table split into tables of at most ``max_columns`` columns, each repeating the
        first column so that every part can be read alone."""
        if len(self.columns) <= max_columns:
            return [self]
        rest = len(self.columns) - 1
        n = math.ceil(rest / (max_columns - 1))
        step = math.ceil(rest / n)  # parts of even width, not a full one and a stub
        out = []
        for k, start in enumerate(range(1, len(self.columns), step)):
            cols = [0, *range(start, min(start + step, len(self.columns)))]
            cap = f"{self.caption} ({k + 1}/{n})" if self.caption else f"({k + 1}/{n})"
            out.append(
                Table(
                    [self.columns[i] for i in cols], [[r[i] for i in cols] for r in self.rows], cap
                )
            )
        return out


@dataclass
class Plot:
    """A rendered figure: ``name`` is unique in the report and safe as a file name."""

    name: str
    title: str
    png: bytes


@dataclass
class Text:
    """A paragraph; ``style`` is "p", "warning" (shown highlighted) or "note"."""

    text: str
    style: str = "p"


@dataclass
class Code:
    """Preformatted text (JSON configuration), collapsed by default in HTML."""

    text: str
    caption: str = ""


Block = Table | Plot | Text | Code


@dataclass
class Section:
    title: str
    blocks: list[Block] = field(default_factory=list)
    level: int = 2


# Differences of two shares, shown in percentage points (-0.088 is "-8.8").
POINT_KEYS = ("leak_effect",)


def _is_share(key: str) -> bool:
    """Fields holding a share in [0, 1] shown as a percentage (accuracies, rates)."""
    if key.endswith("_points") or key in POINT_KEYS:
        return False
    return "acc" in key or key.endswith("rate") or key in ("leaked", "share")


def fmt(key: str, value: Any) -> str:
    """One table cell: accuracies and rates as %, ε as "8/255", times in seconds."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if (key == "eps" or key.endswith("_eps")) and isinstance(value, (int, float)):
        return plots.eps_label(float(value))
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if key == "ratio" or key.endswith("_ratio"):
            return f"{value:.3f}"
        if key in POINT_KEYS:
            return f"{100 * value:.1f}"
        if _is_share(key) and -0.001 <= value <= 1.001:
            return f"{100 * value:.1f}%"
        if ("second" in key or key.endswith("_s") or key == "time") and not key.endswith("per_s"):
            return f"{value:.1f} s"
        return f"{value:.4g}"
    if isinstance(value, (list, dict)):
        text = json.dumps(value, default=str)
        return text if len(text) <= 80 else text[:77] + "..."
    return str(value)


def _scalar_keys(
    records: Sequence[dict[str, Any]], first: Sequence[str] = (), skip: Iterable[str] = ()
) -> list[str]:
    """Columns for a table: ``first`` (those present), then every other key in order of appearance."""
    # ε is shown as "8/255", so its unit column says nothing more; a record's kind is what put
    # it in its section.
    skip = set(skip) | {"eps_unit", RECORD_KIND_KEY}
    present: dict[str, None] = {}
    for r in records:
        for k in r:
            if k not in skip:
                present.setdefault(k, None)
    return [k for k in first if k in present] + [k for k in present if k not in first]


def records_table(
    records: Sequence[dict[str, Any]],
    first: Sequence[str] = (),
    skip: Iterable[str] = (),
    caption: str = "",
    limit: int = 200,
) -> Table:
    """A table of ``records`` with the columns they carry (missing fields are blank)."""
    cols = _scalar_keys(records, first, skip)
    rows = [[fmt(c, r.get(c)) if c in r else "" for c in cols] for r in records[:limit]]
    if len(records) > limit:
        caption = (caption + " " if caption else "") + f"(first {limit} of {len(records)} rows)"
    return Table([column_label(c) for c in cols], rows, caption)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_").lower() or "plot"


class Plots:
    """Renders figures to PNG with unique names."""

    def __init__(self) -> None:
        self.names: set[str] = set()

    def __call__(self, name: str, title: str, fig) -> Plot:
        base = _slug(name)
        unique, i = base, 2
        while unique in self.names:
            unique, i = f"{base}_{i}", i + 1
        self.names.add(unique)
        return Plot(unique, title, plots.figure_png(fig))
