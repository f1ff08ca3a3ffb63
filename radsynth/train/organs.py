"""Train CTGenerate's organ-guided slice model: the ASCII score model with each slice's organ map as a condition.

The same VE-SDE score model as ``radsynth.train.slices`` (K adjacent axial slices on the model grid, per-channel
noise levels, EMA), with the one-hot organ maps of the K slices as extra input channels
(``radsynth.nets.score_unet``, ``condition_channels``). Map dropout: for a share ``--map-dropout`` (default 0.15)
of every batch the condition is all zeros, so the one model also runs unguided (``guidance 0``) and supports
classifier-free guidance (``guidance`` > 1). Label scheme: ``radsynth.pipelines.inpaint.labels`` (0 background,
1 body, 2 left lung, 3 right lung, 4 trachea, 5 nodule).

Maps, per layout of ``radsynth.train.slices.find_volumes`` (``--data FOLDER``):
  TotalSegmentator  <subject>/ct.nii.gz + <subject>/segmentations/: left lung = lung_upper_lobe_left ∪
                    lung_lower_lobe_left, right lung = the three right lobes, trachea = trachea.nii.gz; body from
                    radsynth.anatomy.body_mask (TotalSegmentator's default task has no body)
  MSD               imagesTr/<case>.nii.gz + labelsTr/<case>.nii.gz (e.g. Task06_Lung): the automatic map
                    (radsynth.pipelines.inpaint.auto_map) with every non-zero label voxel as nodule on top
  flat / DICOM      the automatic map of each CT
  default (demo)    the two pyradiomics sample CTs: automatic map, their tumour labels as nodule
Each map is resampled in-plane onto the model grid by nearest neighbour, exactly as the pipeline does.

By default it starts from the demo slice model (``--init radsynth/weights/demo-slice-score``): its first
convolution gets zero weights for the map channels, so training starts from a model that already grows chest
slices and only has to learn to follow the map. ``--init none`` trains from scratch.

Run: ``scripts/train_organ_demo.sh`` (``python -m radsynth.train.organs --out radsynth/weights``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from ..pipelines.inpaint import labels
from ..volume import Volume, read_volume
from .slices import DEMO_WARNING, HU_RANGE, SCORE_ARCH, SDE, find_volumes, to_unit, train_score

CLASSES = list(labels.BASIC)          # background, body, left lung, right lung, trachea, nodule
MAP_DROPOUT = 0.15
WEIGHTS = Path(__file__).resolve().parents[1] / "weights"
TOTALSEG_LUNGS = {labels.LEFT_LUNG: ("lung_upper_lobe_left", "lung_lower_lobe_left"),
                  labels.RIGHT_LUNG: ("lung_upper_lobe_right", "lung_middle_lobe_right", "lung_lower_lobe_right"),
                  labels.TRACHEA: ("trachea",)}


def _nonzero_on(path: Path, ct: Volume) -> np.ndarray:
    from ..volume import mask_on_grid
    return mask_on_grid(read_volume(path), ct).array > 0


def organ_map(ct_path: Path, ct: Volume, nodules: Optional[Path] = None) -> tuple[np.ndarray, str]:
    """The label map of one training CT (uint8 on its grid) and where it came from."""
    from ..anatomy import body_mask
    from ..pipelines.inpaint.auto_map import auto_map

    seg = ct_path.parent / "segmentations"
    if ct_path.name == "ct.nii.gz" and seg.is_dir():
        masks = {labels.BODY: body_mask(ct)}
        for value, names in TOTALSEG_LUNGS.items():
            parts = [seg / f"{n}.nii.gz" for n in names if (seg / f"{n}.nii.gz").is_file()]
            if parts:
                masks[value] = np.logical_or.reduce([_nonzero_on(p, ct) for p in parts])
        return labels.compose(masks, ct.shape), "TotalSegmentator segmentations + body mask"
    if nodules is None and ct_path.parent.name == "imagesTr":
        candidate = ct_path.parent.parent / "labelsTr" / ct_path.name
        nodules = candidate if candidate.is_file() else None
    made = auto_map(ct, read_volume(nodules) if nodules is not None else None)
    return made.map.array, "automatic map" + (" + label as nodule" if nodules is not None else "")


def load_examples(paths: list[Path], size: int, spacing_mm: float, nodules: Optional[list[Path]] = None,
                  log=print) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(HU stacks, label stacks), both (N, size, size) foot → head on the model grid."""
    from ..geometry import axial_axis
    from ..pipelines.generate.slices import foot_to_head, labels_to_model_plane
    from .slices import model_stack

    stacks, maps = [], []
    for i, path in enumerate(paths):
        ct = read_volume(path)
        if axial_axis(ct) != 0:
            log(f"skipping {path}: not axial")
            continue
        label_map, source = organ_map(path, ct, nodules[i] if nodules else None)
        stacks.append(model_stack(ct, size, spacing_mm))
        maps.append(labels_to_model_plane(foot_to_head(ct, label_map), ct.spacing, size, spacing_mm))
        present = {labels.BY_VALUE[int(v)].name: int(c) for v, c in zip(*np.unique(maps[-1], return_counts=True))}
        log(f"{path.name}: {stacks[-1].shape[0]} slices; map from {source}: {present}", flush=True)
    return stacks, maps


def organ_windows(stacks: list[np.ndarray], maps: list[np.ndarray], k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(M, K, H, W) model-unit windows and their (M, K, H, W) label windows; each stack padded below with one air
    slice whose map is background (the unconditional start)."""
    xs, ls = [], []
    for s, m in zip(stacks, maps):
        u = np.concatenate([np.full_like(s[:1], -1.0, dtype=np.float32), to_unit(s)], 0)
        lab = np.concatenate([np.zeros_like(m[:1]), m], 0)
        xs += [u[i:i + k] for i in range(u.shape[0] - k + 1)]
        ls += [lab[i:i + k] for i in range(lab.shape[0] - k + 1)]
    return torch.from_numpy(np.stack(xs)), torch.from_numpy(np.stack(ls).astype(np.int64))


def main(argv: Optional[list[str]] = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=WEIGHTS)
    ap.add_argument("--data", type=Path, default=None, help="training folder (layouts: module docstring)")
    ap.add_argument("--init", default=str(WEIGHTS / "demo-slice-score"),
                    help="slice-score model folder to start from, or 'none'")
    ap.add_argument("--minutes", type=float, default=25.0)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--map-dropout", type=float, default=MAP_DROPOUT)
    ap.add_argument("--name", default="demo")
    args = ap.parse_args(argv)

    from ..models import read_card, save_model
    from ..sample_data import sample_path

    torch.set_flush_denormal(True)
    init = None if args.init.lower() == "none" else Path(args.init)
    base = read_card(init) if init else {"architecture": SCORE_ARCH, "sde": SDE,
                                          "grid": {"size": 64, "spacing_mm": 6.0}}
    grid = dict(base["grid"])
    k = int(base["architecture"]["slices"])
    arch = dict(base["architecture"], condition_channels=k * len(CLASSES))
    demo = args.data is None
    if demo:
        paths = [Path(sample_path(n, "image")) for n in ("lung1", "lung2")]
        nodules = [Path(sample_path(n, "label")) for n in ("lung1", "lung2")]
    else:
        paths, nodules = find_volumes(args.data), None
    stacks, maps = load_examples(paths, int(grid["size"]), float(grid["spacing_mm"]), nodules)
    grid["slice_spacing_mm"] = round(float(np.median([read_volume(p).spacing[2] for p in paths])), 3)
    windows, label_windows = organ_windows(stacks, maps, k)
    net, log = train_score(windows, arch, args.minutes * 60, lr=args.lr, sde=base["sde"], init=init,
                           maps=label_windows, classes=CLASSES, map_dropout=args.map_dropout)
    n = sum(s.shape[0] for s in stacks)
    log["map_dropout"] = args.map_dropout
    if init:
        log["initialised_from"] = {"model": base.get("name"), "version": base.get("version"),
                                   "seconds": (base.get("training") or {}).get("total_seconds")
                                   or (base.get("training") or {}).get("seconds")}
    data = {"volumes": [p.name for p in paths], "slices": n,
            "maps": "automatic body/lung/trachea map + tumour label as nodule" if demo else "see radsynth/train/organs.py",
            "source": "pyradiomics sample CTs lung1, lung2" if demo else str(args.data)}
    card = {
        "name": f"{args.name}-organ-score", "kind": "organ-score", "version": "0.1.0", "demo": demo,
        "description": f"Organ-guided ASCII score model (VE-SDE) over K={k} adjacent axial slices: each slice follows "
                       "its organ map (one-hot input channels); trained with map dropout, so it also runs unguided.",
        "warning": DEMO_WARNING.format(n=n, size=grid["size"], mm=grid["spacing_mm"]).replace(
            "its slices are blurry", "it follows the body outline and lungs of a map only coarsely, its slices are "
            "blurry") if demo else "",
        "architecture": arch, "sde": base["sde"], "window": list(base.get("window", HU_RANGE)), "grid": grid,
        "classes": CLASSES, "class_names": [labels.BY_VALUE[c].name for c in CLASSES],
        "sampling": {"fast_start_sigma": (base.get("sampling") or {}).get("fast_start_sigma", 1.0)},
        "training": {**log, "data": data, "script": "scripts/train_organ_demo.sh"},
        "can": "generate chest CT slices that follow a body / lung / trachea / nodule map on the grid above",
        "cannot": "organs outside its classes; real anatomy or texture; other body regions",
        "licence": "Apache-2.0",
    }
    save_model(args.out / f"{args.name}-organ-score", net, card, half=True)
    print(json.dumps({"organ-score": log}), flush=True)


if __name__ == "__main__":
    main()
