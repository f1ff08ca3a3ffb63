#!/usr/bin/env bash
# Train CTGenerate's slice models (ASCII score model, K=2, and IC-Net) on axial slices at 64² / 6 mm in-plane.
#   scripts/train_slice_demo.sh                      # demo: the two pyradiomics sample chest CTs -> radsynth/weights
#   scripts/train_slice_demo.sh --data FOLDER --out DIR --name mymodel --score-minutes 600
# Folder layouts (TotalSegmentator <subject>/ct.nii.gz, MSD imagesTr/, flat *.nii.gz / *.nrrd, DICOM series
# folders): radsynth/train/slices.py. On this project's 2-core CPU the demo takes ~9.5 min (7 score + 2 IC-Net).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
exec "$PY" -m radsynth.train.slices "$@"
