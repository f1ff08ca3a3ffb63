#!/usr/bin/env bash
# Re-trains the bundled demo models on the two sample chest CTs, as they were made (2-core CPU, two threads):
#   VQ-GAN 1600 steps on 48^3 crops (~25 min), texture BBDM stage 1 1500 steps (~28 min) + stage 2
#   on 500 samples, shape GAN (~13 min wall-time cap). Times in each card's "training" field. The bundled texture model
#   was fine-tuned through earlier versions of this recipe as the method changed; its card's training.init says how.
# Pass --data ROOT to train on a real dataset instead (layouts in radsynth/train/data.py) and OUT_DIR elsewhere.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT_DIR:-radsynth/weights}
PY=.venv/bin/python
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
$PY -m radsynth.train.vqgan --out "$OUT/demo-tumor-vqgan" --steps 1600 --adv-start 500 "$@"
STAGE1=$(mktemp -d)/demo-tumor-bbdm
$PY -m radsynth.train.texture --vqgan "$OUT/demo-tumor-vqgan" --out "$STAGE1" --steps 1500 --seed 0 "$@"
$PY -m radsynth.train.texture --vqgan "$OUT/demo-tumor-vqgan" --out "$OUT/demo-tumor-bbdm" --init "$STAGE1" \
  --samples 500 --steps 2500 --seed 5 --lr 4e-4 "$@"
$PY -m radsynth.train.shape --out "$OUT/demo-shape-gan" "$@"
