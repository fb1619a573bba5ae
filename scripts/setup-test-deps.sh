#!/usr/bin/env bash
# Optional system packages some tests use; never fails (tests needing them skip when absent).
#   chromium: renders the HTML report in tests/report/test_html_browser.py.
# Installs with apt-get only when running as root (or with password-less sudo) on Debian/Ubuntu.
set -u

have_browser() {
  command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 ||
    command -v google-chrome >/dev/null 2>&1
}

if have_browser; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "setup-test-deps: no apt-get; install Chromium yourself to run the HTML report browser test" >&2
  exit 0
fi
if [ "$(id -u)" = 0 ]; then
  SUDO=""
elif sudo -n true 2>/dev/null; then
  SUDO="sudo -n"
else
  echo "setup-test-deps: not root; run 'sudo apt-get install chromium' to enable the HTML report browser test" >&2
  exit 0
fi

echo "setup-test-deps: installing chromium (for the HTML report browser test)" >&2
export DEBIAN_FRONTEND=noninteractive
if ! $SUDO apt-get install -y -q chromium >/dev/null 2>&1; then
  # The package lists may be missing or stale on a fresh machine.
  $SUDO apt-get update -q >/dev/null 2>&1 || true
  $SUDO apt-get install -y -q chromium >/dev/null 2>&1 ||
    echo "setup-test-deps: could not install chromium; the browser test will be skipped" >&2
fi
exit 0
