#!/usr/bin/env bash
# README command 2: install and run the whole test suite (unit, MRML with slicer-core, end-to-end on real CT).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
.venv/bin/python -m radsynth.sample_data >/dev/null
exec .venv/bin/python -m pytest "$@"
