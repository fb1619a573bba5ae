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
from advscale.utils import atomic_write_text

FORMATS = (".html", ".md", ".csv")


def write_csv_report(results: Iterable[RunInput], out_path: str | os.PathLike) -> Path:
    """One CSV row per record of every run: ``run``, ``kind`` and ``source`` first, then every
    field any record has (lists and dicts as JSON, missing fields empty). Numbers are as the
    results files store them (accuracies in [0, 1], ε in pixel levels)."""
    runs = collect_runs(results)
    rows = []
    for run in runs:
        for r in run.results.records:
            rec = r if isinstance(r, dict) else {"value": r}
            rows.append({"run": run.label, "kind": run.results.kind, "source": run.source, **rec})
    columns = list(dict.fromkeys(k for row in rows for k in row))
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_cell(row.get(c)) for c in columns])
    return atomic_write_text(out_path, buf.getvalue())


def _cell(v: object) -> str:
    if v is None:
        return ""
    if isinstance(v, (list, dict)):
        return json.dumps(v, default=str)
    return str(v)


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
