"""Reports: results JSON of any advscale command -> Markdown (with PNG plots), self-contained HTML
or one CSV table; galleries of the adversarial examples an evaluation saved.

Example:
    >>> from advscale.report import write_html_report, write_markdown_report
    >>> write_html_report(["runs/baseline", "runs/hardened"], "report.html")  # doctest: +SKIP
"""

from __future__ import annotations

from advscale.report.blocks import Section
from advscale.report.export import write_csv_report, write_report
from advscale.report.gallery import read_examples, write_gallery_png
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
    "read_examples",
    "render_markdown",
    "write_csv_report",
    "write_gallery_png",
    "write_html_report",
    "write_markdown_report",
    "write_report",
]
