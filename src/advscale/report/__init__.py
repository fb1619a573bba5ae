"""Reports: results JSON of any advscale command -> Markdown (with PNG plots) and self-contained HTML.

Example:
    >>> from advscale.report import write_html_report, write_markdown_report
    >>> write_html_report(["runs/baseline", "runs/hardened"], "report.html")  # doctest: +SKIP
"""

from __future__ import annotations

from advscale.report.blocks import Section
from advscale.report.html import render_html, write_html_report
from advscale.report.markdown import render_markdown, write_markdown_report
from advscale.report.plots import figure_png, png_data_uri
from advscale.report.runs import Run, collect_runs
from advscale.report.sections import build_sections

__all__ = [
    "Run",
    "Section",
    "build_sections",
    "collect_runs",
    "figure_png",
    "png_data_uri",
    "render_html",
    "render_markdown",
    "write_html_report",
    "write_markdown_report",
]
