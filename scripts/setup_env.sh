#!/usr/bin/env bash
# Creates .venv (once) and installs radsynth with its test extras. Safe to re-run: it only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.radsynth-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  .venv/bin/python -m pip install --quiet --upgrade pip
  # torch first and pinned: an unpinned torch pulls a multi-GB CUDA build; this one is the CPU wheel where
  # available (a CUDA-capable torch installed beforehand is kept, since pyproject asks only torch>=2.3).
  .venv/bin/python -c "import torch" 2>/dev/null || .venv/bin/python -m pip install --quiet torch==2.13.0
  .venv/bin/python -m pip install --quiet -e ".[test]"
  touch "$stamp"
fi
# The browser tests (Testing/web) drive Debian's Chromium through Playwright; install it (and Xvfb) when missing.
if [ ! -x /usr/bin/chromium ] || ! command -v Xvfb >/dev/null 2>&1; then
  scripts/install_browser.sh
fi
