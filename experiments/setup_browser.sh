#!/usr/bin/env bash
# Installs headless Chromium (Debian's `chromium` package) for the visual report's browser test
# (tests/io/html_report_test.py, tests/experiments/main_test.py) when it is missing. Needs root and
# apt-get; elsewhere it says so on its last line and fails, and the browser tests skip with it.
set -euo pipefail
command -v chromium >/dev/null && exit 0
if ! command -v apt-get >/dev/null; then
  echo "no apt-get here: install Chromium yourself (its binary must be called chromium)" >&2; exit 1
fi
if [ "$(id -u)" != 0 ]; then
  echo "installing chromium needs root: run 'apt-get install chromium' as root" >&2; exit 1
fi
exec 9>/tmp/talking_heads_setup_browser.lock
flock 9                                   # pytest workers may ask at the same time
command -v chromium >/dev/null && exit 0
echo "Installing chromium (Debian package; about 300 MB, a minute or two)..." >&2
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -q chromium >&2 || { apt-get update -q >&2 && apt-get install -y -q chromium >&2; } || {
  echo "apt-get could not install chromium (no network or no such package)" >&2; exit 1; }
