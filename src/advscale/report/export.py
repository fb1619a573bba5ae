"""Reports by file extension: ``.html`` (with the Markdown beside it), ``.md``, or ``.csv`` (one
row per record of every run, for a spreadsheet).

Example:
    >>> write_report(["runs/demo", "runs/kurakin"], "table.csv")  # doctest: +SKIP
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Iterable
from pathlib import Path

from advscale.errors import UserError
from advscale.report.html import write_html_report
from advscale.report.markdown import write_markdown_report
from advscale.report.runs import RunInput, collect_runs
from advscale.results import is_number
from advscale.utils import atomic_write_text

FORMATS = (".html", ".md", ".csv")


def write_csv_report(results: Iterable[RunInput], out_path: str | os.PathLike) -> Path:
    """One CSV row per record of every run: ``run``, ``kind`` and ``source`` first, then every
    field any record has (lists and dicts as JSON, missing fields empty). Numbers are as the
    results files store them (accuracies in [0, 1], ε in pixel levels); text that a spreadsheet
    would run as a formula (starting with = + - @, a tab or a carriage return) gets a leading
    apostrophe."""
    runs = collect_runs(results)
    rows = []
    for run in runs:
        for r in run.results.records:
            rec = r if isinstance(r, dict) else {"value": r}
            rows.append({"run": run.label, "kind": run.results.kind, "source": run.source, **rec})
    columns = list(dict.fromkeys(k for row in rows for k in row))
    buf = io.StringIO()
    # RFC 4180 line ends: a cell holding a bare "\r" is quoted, not read as a new row.
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow([_inert(c) for c in columns])
    for row in rows:
        writer.writerow([_cell(row.get(c)) for c in columns])
    return atomic_write_text(out_path, buf.getvalue())


# A spreadsheet runs a cell that starts with one of these as a formula (CSV injection).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _cell(v: object) -> str:
    """A CSV cell: numbers as stored, text (names, JSON) made inert for spreadsheets."""
    if v is None:
        return ""
    if is_number(v):
        return str(v)  # "-0.5" is a number to a spreadsheet, never a formula
    if isinstance(v, (list, dict)):
        return _inert(json.dumps(v, default=str))
    return _inert(str(v))


def _inert(text: str) -> str:
    """``text`` with a leading apostrophe when a spreadsheet would run it as a formula (the
    escape OWASP recommends; spreadsheets show the text without it)."""
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def write_report(
    results: Iterable[RunInput],
    out_path: str | os.PathLike,
    title: str = "advscale report",
    eps: float | None = None,
) -> list[Path]:
    """The report in the format ``out_path``'s extension names (:data:`FORMATS`); returns the
    files written (an HTML report also writes its Markdown twin). ``eps`` (pixel levels) is the
    ε the summary compares at."""
    out_path = Path(out_path)
    ext = out_path.suffix.lower()
    if ext == ".html":
        html = write_html_report(results, out_path, title=title, eps=eps)
        return [html, html.with_suffix(".md")]
    if ext == ".md":
        return [write_markdown_report(results, out_path, title=title, eps=eps)]
    if ext == ".csv":
        return [write_csv_report(results, out_path)]
    raise UserError(
        f"--out {out_path}: unknown report format {ext or '(no extension)'!r}; "
        f"use one of {', '.join(FORMATS)}"
    )
