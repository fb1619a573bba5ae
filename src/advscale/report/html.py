"""Self-contained HTML report: one file, images as base64 data URIs, inline CSS, no network.

A small inline script records in the page, once it has loaded, how many images rendered,
whether any script error occurred and whether the page is wider than the window
(``<body data-images-loaded=... data-images-broken=... data-script-errors=...
data-scroll-width=... data-window-width=...>``), so a headless browser can check the report as
a reader would see it.

Example:
    >>> write_html_report(["runs/demo"], "report.html")  # doctest: +SKIP
"""

from __future__ import annotations

import html
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

from advscale.report.blocks import Code, Plot, Section, Table, Text
from advscale.report.markdown import write_markdown
from advscale.report.plots import png_data_uri
from advscale.report.runs import RunInput, collect_runs
from advscale.report.sections import build_sections
from advscale.utils import atomic_write_text

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 2rem auto;
       max-width: 1200px; padding: 0 1rem; color: #1d1d1f; line-height: 1.45; }
h1 { border-bottom: 2px solid #444; padding-bottom: .3rem; }
h2 { margin-top: 2.2rem; border-bottom: 1px solid #ccc; padding-bottom: .2rem; }
table { border-collapse: collapse; margin: .6rem 0 1.2rem; font-size: .9rem; max-width: 100%; }
caption { caption-side: top; text-align: left; font-style: italic; padding-bottom: .3rem; }
th, td { border: 1px solid #ccc; padding: .25rem .55rem; text-align: right;
         overflow-wrap: anywhere; }
th { background: #f2f2f2; font-weight: 600; vertical-align: bottom; overflow-wrap: normal; }
tbody tr:nth-child(even) { background: #fafafa; }
td:first-child, th:first-child { text-align: left; }
figure { margin: 1rem 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { font-size: .85rem; color: #555; }
.warning { background: #fff4e5; border-left: 4px solid #e67e22; padding: .45rem .7rem; }
.note { color: #444; background: #f6f8fa; border-left: 4px solid #9aa5b1; padding: .45rem .7rem; }
pre { background: #f6f8fa; padding: .6rem; overflow-x: auto; font-size: .8rem;
      white-space: pre-wrap; overflow-wrap: anywhere; }
p, li, figcaption, caption { overflow-wrap: anywhere; }
nav ul { columns: 2; }
.scroll { overflow-x: auto; max-width: 100%; }
"""

# Always harmless: it only writes attributes on <body> for a browser test to read.
STATUS_SCRIPT = """
var advscaleScriptErrors = 0;
// Only script errors (ErrorEvent); a broken image is counted separately below.
window.addEventListener("error", function (e) { if (e instanceof ErrorEvent) { advscaleScriptErrors += 1; } });
window.addEventListener("load", function () {
  var imgs = document.images, ok = 0, broken = [];
  for (var i = 0; i < imgs.length; i++) {
    if (imgs[i].complete && imgs[i].naturalWidth > 0) { ok += 1; } else { broken.push(imgs[i].alt); }
  }
  document.body.setAttribute("data-images-total", String(imgs.length));
  document.body.setAttribute("data-images-loaded", String(ok));
  document.body.setAttribute("data-images-broken", broken.join("|"));
  document.body.setAttribute("data-script-errors", String(advscaleScriptErrors));
  // Whether anything is wider than the window (a reader would have to scroll sideways).
  document.body.setAttribute("data-scroll-width", String(document.documentElement.scrollWidth));
  document.body.setAttribute("data-window-width", String(window.innerWidth));
  var figures = document.querySelectorAll("figure img"), narrow = [];
  for (var j = 0; j < figures.length; j++) {
    if (figures[j].getBoundingClientRect().right > window.innerWidth) { narrow.push(figures[j].alt); }
  }
  document.body.setAttribute("data-overflowing", narrow.join("|"));
  document.body.setAttribute("data-report-status", "done");
});
"""


def _inline(text: str) -> str:
    """Escape, then render the one Markdown construct the sections use: **bold**."""
    return re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", html.escape(text))


def _anchor(i: int) -> str:
    return f"s{i}"


def _table(t: Table) -> str:
    return "".join(_one_table(p) for p in t.parts())


def _one_table(t: Table) -> str:
    esc = html.escape
    head = "".join(f"<th>{esc(c)}</th>" for c in t.columns)
    body = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in t.rows)
    cap = f"<caption>{esc(t.caption)}</caption>" if t.caption else ""
    table = f"<table>{cap}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
    return f'<div class="scroll">{table}</div>'


def render_html(sections: Sequence[Section], title: str) -> str:
    """The complete HTML document."""
    esc = html.escape
    parts = []
    toc = "".join(
        f'<li><a href="#{_anchor(i)}">{esc(s.title)}</a></li>' for i, s in enumerate(sections)
    )
    for i, s in enumerate(sections):
        parts.append(f'<section id="{_anchor(i)}"><h{s.level}>{esc(s.title)}</h{s.level}>')
        for b in s.blocks:
            if isinstance(b, Table):
                parts.append(_table(b))
            elif isinstance(b, Plot):
                parts.append(
                    f'<figure><img alt="{esc(b.title)}" src="{png_data_uri(b.png)}">'
                    f"<figcaption>{esc(b.title)}</figcaption></figure>"
                )
            elif isinstance(b, Text):
                cls = f' class="{b.style}"' if b.style in ("warning", "note") else ""
                prefix = "<strong>Warning:</strong> " if b.style == "warning" else ""
                parts.append(f"<p{cls}>{prefix}{_inline(b.text)}</p>")
            elif isinstance(b, Code):
                parts.append(
                    f"<details><summary>{esc(b.caption)}</summary><pre>{esc(b.text)}</pre></details>"
                )
        parts.append("</section>")
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width, initial-scale=1"><title>{esc(title)}</title>'
        f"<style>{CSS}</style><script>{STATUS_SCRIPT}</script></head>\n<body>"
        f"<h1>{esc(title)}</h1><nav><ul>{toc}</ul></nav>\n"
        + "\n".join(parts)
        + "\n</body></html>\n"
    )


def write_html_report(
    results: Iterable[RunInput],
    out_path: str | os.PathLike,
    title: str = "advscale report",
    markdown: bool = True,
    eps: float | None = None,
) -> Path:
    """One self-contained HTML report on ``results`` (and, with ``markdown``, ``<stem>.md`` beside it).

    Args:
        results: ``Results`` objects, results files, run directories (a directory without a
            results.json contributes every results.json below it), or ``(name, ...)`` pairs.
        out_path: the ``.html`` file to write.
        title: the report's heading.
        markdown: also write the Markdown version with its PNG plots next to the HTML file.
        eps: the ε (pixel levels) the summary compares robustness at; by default the largest
            ε every run was evaluated at.

    Returns:
        The HTML path.

    Raises:
        ResultsError: a results file that cannot be read (names the file).
    """
    out_path = Path(out_path)
    sections = build_sections(collect_runs(results), eps)
    if markdown:
        write_markdown(sections, out_path.with_suffix(".md"), title)
    return atomic_write_text(out_path, render_html(sections, title))
