"""The HTML report as a reader sees it: rendered by headless Chromium, every image loads, no script
error, nothing wider than the window."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
NO_BROWSER = (
    "Chromium not found: install it with `sudo apt-get install chromium` "
    "(or run `bash scripts/setup-test-deps.sh` as root) to render the HTML report in a browser"
)
HEADLESS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-extensions",
    "--hide-scrollbars",
)


def _browser() -> str:
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    pytest.skip(NO_BROWSER)


def _render(browser: str, page: Path, profile: Path, width: int = 1280) -> tuple[dict, str]:
    """The <body> attributes after the page loaded, and the DOM, as Chromium dumps them."""
    cmd = [
        browser,
        *HEADLESS,
        f"--user-data-dir={profile}",
        f"--window-size={width},900",
        "--dump-dom",
        "--virtual-time-budget=5000",
        page.as_uri(),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=90)
    body = re.search(r"<body([^>]*)>", proc.stdout)
    assert body, f"no DOM from {browser} (exit {proc.returncode}): {proc.stderr[-2000:]}"
    return dict(re.findall(r'([\w-]+)="([^"]*)"', body.group(1))), proc.stdout


def test_report_renders_in_a_browser_with_every_image(full_report, tmp_path):
    browser = _browser()
    out = full_report
    status, _ = _render(browser, out, tmp_path / "profile")
    assert status.get("data-report-status") == "done", status
    assert status["data-script-errors"] == "0"
    assert status["data-images-broken"] == ""
    assert int(status["data-images-total"]) == 6
    assert status["data-images-loaded"] == status["data-images-total"]

    # The check itself catches a broken image, a failing script and a too-wide element.
    page = out.read_text().replace(
        "</body>",
        '<img alt="bad" src="data:image/png;base64,AAAA">'
        '<div style="width:3000px">wide</div>'
        "<script>undefinedFunction();</script></body>",
    )
    broken = tmp_path / "broken.html"
    broken.write_text(page)
    status, _ = _render(browser, broken, tmp_path / "profile2")
    assert status["data-images-broken"] == "bad"
    assert status["data-script-errors"] == "1"
    assert int(status["data-scroll-width"]) > int(status["data-window-width"])


@pytest.mark.parametrize("width", [1280, 800])
def test_report_of_a_real_run_shows_summary_gallery_and_fits_the_window(real_runs, tmp_path, width):
    """Summary, frontier, gallery, curves, accuracy plot: every figure loads, and neither a
    laptop nor a narrow window has to scroll sideways (wide tables wrap or split)."""
    from advscale.cli import main

    browser = _browser()
    out = tmp_path / "report.html"
    assert main(["report", str(real_runs["train"]), str(real_runs["eval"]), "--out", str(out)]) == 0
    status, dom = _render(browser, out, tmp_path / "profile", width)
    assert status.get("data-report-status") == "done", status
    assert status["data-script-errors"] == "0" and status["data-images-broken"] == ""
    alts = set(re.findall(r'<img alt="([^"]*)"', dom))
    assert alts == {
        "Worst-case robust accuracy against training time (filled: Pareto front)",
        "Accuracy against ε per attack",
        "Adversarial examples of kurakin at ε=8/255",
        "Training curves of kurakin (training), per optimizer step; "
        "diamonds: the catastrophic-overfitting guard's checks",
    }
    assert status["data-images-loaded"] == str(len(alts))
    assert ">Summary</h2>" in dom and "<strong>Best trade-off: kurakin" in dom
    assert ">Adversarial examples: kurakin</h2>" in dom
    assert int(status["data-window-width"]) == width
    assert int(status["data-scroll-width"]) <= width, status
    assert status["data-overflowing"] == ""
