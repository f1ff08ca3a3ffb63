#!/usr/bin/env bash
# Train CTGenerate's organ-guided slice model (ASCII score model + one-hot organ maps as input channels, map dropout)
#   scripts/train_organ_demo.sh                     # demo: the two sample chest CTs with their automatic maps,
#                                                   # started from radsynth/weights/demo-slice-score -> radsynth/weights
#   scripts/train_organ_demo.sh --data FOLDER --out DIR --name mymodel --minutes 600 [--init none]
# Folder layouts (TotalSegmentator <subject>/ct.nii.gz + segmentations/, MSD imagesTr/ + labelsTr/, flat, DICOM)
# and how each map is made: radsynth/train/organs.py. The demo trains 25 min on one thread of a 2-core CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
exec "$PY" -m radsynth.train.organs "$@"
