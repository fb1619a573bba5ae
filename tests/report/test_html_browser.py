"""The HTML report as a reader sees it: rendered by headless Chromium, every image loads, no script error."""

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


def _browser() -> str:
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    pytest.skip(NO_BROWSER)


def _render(browser: str, page: Path, profile: Path) -> dict[str, str]:
    """The <body> attributes after the page loaded, from the DOM Chromium dumps."""
    cmd = [
        browser,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--disable-extensions",
        f"--user-data-dir={profile}",
        "--dump-dom",
        "--virtual-time-budget=5000",
        page.as_uri(),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=90)
    body = re.search(r"<body([^>]*)>", proc.stdout)
    assert body, f"no DOM from {browser} (exit {proc.returncode}): {proc.stderr[-2000:]}"
    return dict(re.findall(r'([\w-]+)="([^"]*)"', body.group(1)))


def test_report_renders_in_a_browser_with_every_image(full_report, tmp_path):
    browser = _browser()
    out = full_report
    status = _render(browser, out, tmp_path / "profile")
    assert status.get("data-report-status") == "done", status
    assert status["data-script-errors"] == "0"
    assert status["data-images-broken"] == ""
    assert int(status["data-images-total"]) == 5
    assert status["data-images-loaded"] == status["data-images-total"]

    # The check itself catches a broken image and a failing script.
    page = out.read_text().replace(
        "</body>",
        '<img alt="bad" src="data:image/png;base64,AAAA">'
        "<script>undefinedFunction();</script></body>",
    )
    broken = tmp_path / "broken.html"
    broken.write_text(page)
    status = _render(browser, broken, tmp_path / "profile2")
    assert status["data-images-broken"] == "bad"
    assert status["data-script-errors"] == "1"
