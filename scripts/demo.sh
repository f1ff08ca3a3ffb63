#!/usr/bin/env bash
# README command 1: install, fetch the sample chest CTs, remove a tumour and synthesize one; results in out/demo.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
.venv/bin/radsynth demo --out "${1:-out/demo}"
