#!/usr/bin/env bash
# Re-trains the bundled demo models on the two sample chest CTs, as they were made (2-core CPU, one thread each):
#   VQ-GAN 500 steps (~19 min), texture BBDM stage 1 1500 steps (~28 min) + stage 2 1200 steps on 500 samples
#   (~35 min), shape GAN (~13 min wall-time cap). Times in each card's "training" field. The bundled texture model
#   was fine-tuned through earlier versions of this recipe as the method changed; its card's training.init says how.
# Pass --data ROOT to train on a real dataset instead (layouts in radsynth/train/data.py) and OUT_DIR elsewhere.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT_DIR:-radsynth/weights}
PY=.venv/bin/python
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
$PY -m radsynth.train.vqgan --out "$OUT/demo-tumor-vqgan" --steps 500 "$@"
STAGE1=$(mktemp -d)/demo-tumor-bbdm
$PY -m radsynth.train.texture --vqgan "$OUT/demo-tumor-vqgan" --out "$STAGE1" --steps 1500 --seed 0 "$@"
$PY -m radsynth.train.texture --vqgan "$OUT/demo-tumor-vqgan" --out "$OUT/demo-tumor-bbdm" --init "$STAGE1" \
  --samples 500 --steps 1200 --seed 4 --lr 3e-4 "$@"
$PY -m radsynth.train.shape --out "$OUT/demo-shape-gan" "$@"
