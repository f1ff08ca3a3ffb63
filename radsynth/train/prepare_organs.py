"""TotalSegmentator / KiTS23 organ masks → one organ label map per CT, for mask-conditioned inpainting (seed 002).

Expected folders (as downloaded)::

    TotalSegmentator   <root>/<s0001>/ct.nii.gz + <root>/<s0001>/segmentations/<structure>.nii.gz  (one file per
                       structure, v1 or v2 names; meta.csv beside is read for the split when present)
    KiTS23             <root>/case_00000/imaging.nii.gz + segmentation.nii.gz  (1 kidney, 2 tumour, 3 cyst)

Output: ``<out>/<case>.nrrd`` (uint8 organ map, values in ``ORGANS``) and ``<out>/index.json`` (image, map, the
organs present with their voxel counts and the axial slices that contain each; for TotalSegmentator the split).

Corrections to seed 002: the lung is the union of TotalSegmentator's **five** lobes (the thesis listed six,
including a left middle lobe that does not exist); organs keep separate values instead of one binary union, so
one model can be asked for a given organ; KiTS tumours and cysts are their own values (seed 002 used tumours only
and noted that TotalSegmentator's unlabelled tumours and cysts leak into generated organs).
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path
from typing import Optional

import numpy as np

from ..errors import RadSynthError
from ..volume import read_volume, write_volume

ORGANS: dict[int, str] = {1: "kidney", 2: "liver", 3: "spleen", 4: "pancreas", 5: "gallbladder", 6: "lung",
                          7: "kidney tumour", 8: "kidney cyst"}
#: TotalSegmentator structure files per organ (v1 and v2 share these names)
TOTALSEG: dict[int, tuple[str, ...]] = {
    1: ("kidney_left", "kidney_right"),
    2: ("liver",),
    3: ("spleen",),
    4: ("pancreas",),
    5: ("gallbladder",),
    6: ("lung_upper_lobe_left", "lung_lower_lobe_left", "lung_upper_lobe_right", "lung_middle_lobe_right",
        "lung_lower_lobe_right"),
}
KITS = {1: 1, 2: 7, 3: 8}   # KiTS23 value → ours
NII = ".nii.gz"


def detect(root: Path) -> str:
    if any((d / "ct.nii.gz").is_file() and (d / "segmentations").is_dir() for d in root.iterdir() if d.is_dir()):
        return "totalsegmentator"
    if any((d / "imaging.nii.gz").is_file() for d in root.glob("case_*")):
        return "kits23"
    raise RadSynthError(f"{root} is neither a TotalSegmentator folder (<case>/ct.nii.gz + <case>/segmentations/) nor "
                        "a KiTS23 folder (case_*/imaging.nii.gz + segmentation.nii.gz).")


def _splits(root: Path) -> dict[str, str]:
    meta = root / "meta.csv"
    if not meta.is_file():
        return {}
    with open(meta, newline="") as f:
        sample = f.read(4096)
        f.seek(0)
        rows = list(csv.DictReader(f, delimiter=";" if sample.count(";") > sample.count(",") else ","))
    return {r["image_id"]: r.get("split", "") for r in rows if "image_id" in r}


def _entry(case: str, image: Path, organ_map: np.ndarray, map_path: Path, **extra) -> dict:
    present = {}
    for value, name in ORGANS.items():
        m = organ_map == value
        if m.any():
            present[name] = {"value": value, "voxels": int(m.sum()),
                             "slices": np.flatnonzero(m.any(axis=(1, 2))).astype(int).tolist()}
    return {"case": case, "image": str(image), "map": str(map_path), "organs": present, **extra}


def _totalseg_case(case_dir: Path, organs: tuple[int, ...]) -> tuple[Path, np.ndarray, list[str]]:
    image = case_dir / "ct.nii.gz"
    ct = read_volume(image)
    out = np.zeros(ct.shape, np.uint8)
    missing = []
    for value in organs:
        for name in TOTALSEG[value]:
            path = case_dir / "segmentations" / f"{name}{NII}"
            if not path.is_file():
                missing.append(name)
                continue
            seg = read_volume(path)
            if not seg.same_grid(ct):
                raise RadSynthError(f"{path} is not on the grid of {image}.")
            out[(seg.array > 0) & (out == 0)] = value
    return image, out, missing


def prepare(root: Path | str, out: Path | str, organs: Optional[tuple[str, ...]] = None,
            limit: Optional[int] = None) -> dict:
    """Prepare every case under ``root`` (TotalSegmentator or KiTS23, detected); ``organs`` limits the
    TotalSegmentator organs by name (default: all of ``TOTALSEG``)."""
    root, out = Path(root), Path(out)
    if not root.is_dir():
        raise RadSynthError(f"Folder not found: {root}")
    layout = detect(root)
    names = {v: k for k, v in ORGANS.items()}
    if organs:
        unknown = [o for o in organs if o not in names or names[o] not in TOTALSEG]
        if unknown:
            raise RadSynthError(f"Unknown organ(s) {', '.join(unknown)}; choose from "
                                f"{', '.join(ORGANS[v] for v in TOTALSEG)}.")
    wanted = tuple(names[o] for o in organs) if organs else tuple(TOTALSEG)
    out.mkdir(parents=True, exist_ok=True)
    cases = []
    if layout == "totalsegmentator":
        splits = _splits(root)
        dirs = sorted(d for d in root.iterdir() if (d / "ct.nii.gz").is_file())[:limit]
        for d in dirs:
            image, organ_map, missing = _totalseg_case(d, wanted)
            ct = read_volume(image)
            path = out / f"{d.name}.nrrd"
            write_volume(ct.label_like(organ_map), path)
            cases.append(_entry(d.name, image, organ_map, path, split=splits.get(d.name, ""),
                                missing_structures=missing))
    else:
        for d in sorted(root.glob("case_*"))[:limit]:
            image, seg_path = d / "imaging.nii.gz", d / "segmentation.nii.gz"
            if not image.is_file() or not seg_path.is_file():
                continue
            ct, seg = read_volume(image), read_volume(seg_path)
            if not seg.same_grid(ct):
                raise RadSynthError(f"{seg_path} is not on the grid of {image}.")
            unknown = sorted(set(np.unique(seg.array).astype(int).tolist()) - {0, *KITS})
            if unknown:
                raise RadSynthError(f"{seg_path} holds label(s) {', '.join(map(str, unknown))}; KiTS23 uses 1 kidney, "
                                    "2 tumour, 3 cyst.")
            organ_map = np.zeros(ct.shape, np.uint8)
            for theirs, ours in KITS.items():
                organ_map[seg.array == theirs] = ours
            path = out / f"{d.name}.nrrd"
            write_volume(ct.label_like(organ_map), path)
            cases.append(_entry(d.name, image, organ_map, path))
    if not cases:
        raise RadSynthError(f"No complete case found under {root}.")
    index = {"source": str(root), "layout": layout, "labels": ORGANS, "cases": cases}
    (out / "index.json").write_text(json.dumps(index, indent=2) + "\n")
    return index


def main(argv: Optional[list[str]] = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("root", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--organs", nargs="*", default=None, help=f"TotalSegmentator organs ({', '.join(ORGANS[v] for v in TOTALSEG)})")
    ap.add_argument("--limit", type=int, default=None)
    a = ap.parse_args(argv)
    index = prepare(a.root, a.out, tuple(a.organs) if a.organs else None, a.limit)
    print(f"{len(index['cases'])} {index['layout']} cases → {a.out}/index.json")


if __name__ == "__main__":
    main()
