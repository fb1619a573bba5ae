"""Markdown report: tables in GitHub syntax, plots as PNG files beside the ``.md`` file.

Example:
    >>> write_markdown_report(["runs/demo/baseline", "runs/demo/hardened"], "runs/demo/report.md")  # doctest: +SKIP
"""

from __future__ import annotations

import html
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from advscale.report.blocks import Code, Plot, Section, Table, Text
from advscale.report.runs import RunInput, collect_runs
from advscale.report.sections import build_sections
from advscale.utils import atomic_write_bytes, atomic_write_text


def _esc(text: str) -> str:
    # Markdown passes HTML through: a run named "<img onerror=...>" must stay text.
    return html.escape(text, quote=False)


def _cell(text: str) -> str:
    return _esc(text).replace("|", "\\|").replace("\n", " ")


def _table(t: Table) -> str:
    return "\n\n".join(_one_table(p) for p in t.parts())


def _one_table(t: Table) -> str:
    lines = []
    if t.caption:
        lines += [f"*{_esc(t.caption)}*", ""]
    lines.append("| " + " | ".join(_cell(c) for c in t.columns) + " |")
    lines.append("|" + "|".join("---" for _ in t.columns) + "|")
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in t.rows]
    return "\n".join(lines)


def plot_file_name(report_path: Path, plot: Plot) -> str:
    """The PNG file of ``plot`` beside the report: ``<report stem>_<plot name>.png``."""
    return f"{report_path.stem}_{plot.name}.png"


def render_markdown(sections: Sequence[Section], title: str, report_path: Path) -> str:
    """The Markdown text; images link to :func:`plot_file_name` relative to the report."""
    out = [f"# {_esc(title)}", ""]
    for s in sections:
        out += ["#" * s.level + " " + _esc(s.title), ""]
        for b in s.blocks:
            if isinstance(b, Table):
                out.append(_table(b))
            elif isinstance(b, Plot):
                out.append(f"![{_esc(b.title)}]({plot_file_name(report_path, b)})")
            elif isinstance(b, Text):
                if b.style == "warning":
                    out.append(f"> **Warning:** {_esc(b.text)}")
                elif b.style == "note":
                    out.append(f"> {_esc(b.text)}")
                else:
                    out.append(_esc(b.text))
            elif isinstance(b, Code):
                out += [
                    f"<details><summary>{_esc(b.caption)}</summary>",
                    "",
                    "```json",
                    b.text,
                    "```",
                    "",
                    "</details>",
                ]
            out.append("")
    return "\n".join(out).rstrip() + "\n"


def write_markdown(sections: Sequence[Section], out_path: str | os.PathLike, title: str) -> Path:
    """Write ``out_path`` and one PNG per plot beside it (all atomically)."""
    out_path = Path(out_path)
    for s in sections:
        for b in s.blocks:
            if isinstance(b, Plot):
                atomic_write_bytes(out_path.parent / plot_file_name(out_path, b), b.png)
    return atomic_write_text(out_path, render_markdown(sections, title, out_path))


def write_markdown_report(
    results: Iterable[RunInput],
    out_path: str | os.PathLike,
    title: str = "advscale report",
    eps: float | None = None,
) -> Path:
    """Markdown report on ``results`` with its plots as PNG files next to it.

    Args:
        results: ``Results`` objects, results files or run directories, or ``(name, any of
            those)`` pairs to choose the label a run is shown under (by default the config's
            ``name`` or ``model``, else the run directory's name).
        out_path: the ``.md`` file to write; plots go beside it as ``<stem>_<plot>.png``.
        eps: the ε (pixel levels) the summary compares robustness at.

    Returns:
        The path written.

    Raises:
        ResultsError: a results file that cannot be read (names the file).
    """
    runs = collect_runs(results)
    return write_markdown(build_sections(runs, eps), out_path, title)
