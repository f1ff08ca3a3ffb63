#!/usr/bin/env bash
# Train CTGenerate's whole-volume demo model (MAISI networks at small channels: autoencoder, then a rectified-flow
# diffusion UNet with body/lung mask channels) on the two pyradiomics sample chest CTs -> radsynth/weights.
#   scripts/train_volume_demo.sh                                   # demo, ~25 min on one CPU thread
#   scripts/train_volume_demo.sh --data FOLDER --out DIR --name mymodel --scale small --size 128 128 128 \
#       --spacing 2 2 2 --ae-steps 20000 --diffusion-steps 100000 [--resume]
#   torchrun --nproc-per-node 4 -m radsynth.train.volume --data FOLDER --out DIR ...     # several GPUs (DDP)
# Folder layouts (TotalSegmentator <subject>/ct.nii.gz, MSD imagesTr/ e.g. Task07_Pancreas, flat *.nii.gz / *.nrrd,
# DICOM series folders): radsynth/train/volume.py.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
if [ "$#" -eq 0 ]; then
  set -- --out radsynth/weights/demo-volume-ldm --work out/demo-volume-ldm.work \
         --ae-steps 100000 --ae-minutes 10 --diffusion-steps 100000 --diffusion-minutes 13 --diffusion-batch 4
fi
exec "$PY" -m radsynth.train.volume "$@"
