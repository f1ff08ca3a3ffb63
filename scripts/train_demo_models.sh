#!/usr/bin/env bash
# Re-trains the bundled demo models on the two sample chest CTs (2-core CPU: ~12 min VQ-GAN + ~20 min BBDM).
# Pass --data ROOT to train on a real dataset instead (layouts in radsynth/train/data.py) and --out-dir elsewhere.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT_DIR:-radsynth/weights}
.venv/bin/python -m radsynth.train.vqgan --out "$OUT/demo-tumor-vqgan" --steps "${VQ_STEPS:-500}" "$@"
.venv/bin/python -m radsynth.train.texture --vqgan "$OUT/demo-tumor-vqgan" --out "$OUT/demo-tumor-bbdm" \
  --steps "${BBDM_STEPS:-1500}" "$@"
