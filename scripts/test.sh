#!/usr/bin/env bash
# Set up a fresh machine and run every check CI runs: lint, format, tests.
# Usage: bash scripts/test.sh [pytest args]   (e.g. -m "not slow" to skip the end-to-end runs)
set -euo pipefail
cd "$(dirname "$0")/.."

# The code sandbox needs bubblewrap (Debian package 'bubblewrap').
if ! command -v bwrap >/dev/null; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq bubblewrap
fi
# The review page's browser test drives Debian's Chromium (package 'chromium') through
# Playwright; Playwright's own browser download is never used (no internet needed for it).
if [ ! -x /usr/bin/chromium ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq chromium
fi
# here the browser test must run: a missing browser fails it instead of skipping it
export R1LAB_BROWSER_TESTS=required
# torch==2.13.0 is the CPU wheel on our machines; an unpinned torch may pull a CUDA build.
pip install -q torch==2.13.0 -e ".[test]"
ruff check .
ruff format --check .
pytest "$@"
