"""LUNA16 / LIDC-IDRI nodule annotations → label maps with malignancy, for SDM training (seed 001's data).

Expected folder (the layout LUNA16 and LIDC-IDRI are downloaded in)::

    <root>/annotations.csv                    seriesuid,coordX,coordY,coordZ,diameter_mm (world mm, LPS)
    <root>/subset0/<seriesuid>.mhd (+ .raw)   … subset9 (any folder depth below root)
    <root>/seg-lungs-LUNA16/<seriesuid>.mhd   optional: 3 left lung, 4 right lung, 5 trachea
    <root>/**/<n>.xml                         optional: LIDC-IDRI reader XML (tcia-lidc-xml/<nnn>/<n>.xml)

Output: ``<out>/<seriesuid>.nrrd`` (uint8 map in :mod:`radsynth.pipelines.inpaint.labels` values) and
``<out>/index.json`` (image path, map path, nodules with centre, diameter, readers' malignancy ratings and the
label given, axial slices through nodule centres, nodule-free slices with lung).

Corrections to seed 001's preparation (notes/001.md §2.2–2.3):
* voxel positions use the image's direction matrix (LUNA16 images are all axis-aligned, other CTs need not be);
* nodules are spheres of the annotated diameter refined by a two-means intensity threshold in 3D, not a disc on
  the centre slice; every slice through the nodule gets it;
* readers' nodules are matched to an annotation by 3D distance (within the annotated radius, at least 5 mm), not
  by z within 0.5 mm only (two nodules at one height were mixed);
* LIDC malignancy is 1–5 (the thesis wrote 0–4); the mean over the readers who rated the nodule, benign below
  ``MALIGNANT_FROM`` (3.0, the seed's, after Gao et al.), malignant from it; unrated nodules stay "nodule";
* without lung masks the lungs and trachea come from :func:`radsynth.pipelines.inpaint.auto_map.auto_map`.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Optional

import numpy as np
from scipy import ndimage

from ..anatomy import body_mask
from ..errors import RadSynthError
from ..geometry import physical_to_continuous_index
from ..pipelines.inpaint import labels as L
from ..volume import Volume, read_volume, write_volume

NS = "{http://www.nih.gov}"
LUNA_LUNG_VALUES = {3: L.LEFT_LUNG, 4: L.RIGHT_LUNG, 5: L.TRACHEA}
MALIGNANT_FROM = 3.0
MATCH_MIN_MM = 5.0
HEALTHY_STRIDE = 4   # seed 001: every 4th nodule-free slice with lung


@dataclasses.dataclass
class Nodule:
    center_lps: tuple[float, float, float]
    diameter_mm: float
    ratings: list[int] = dataclasses.field(default_factory=list)

    @property
    def malignancy(self) -> Optional[float]:
        return float(np.mean(self.ratings)) if self.ratings else None

    @property
    def label(self) -> int:
        m = self.malignancy
        return L.NODULE if m is None else (L.MALIGNANT if m >= MALIGNANT_FROM else L.BENIGN)


def read_annotations(path: Path) -> dict[str, list[Nodule]]:
    try:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
    except OSError as exc:
        raise RadSynthError(f"Cannot read {path}: {exc}") from exc
    need = {"seriesuid", "coordX", "coordY", "coordZ", "diameter_mm"}
    if not rows or not need <= set(rows[0]):
        raise RadSynthError(f"{path} is not a LUNA16 annotations file: it needs the columns {', '.join(sorted(need))}.")
    out: dict[str, list[Nodule]] = {}
    for n, row in enumerate(rows, 2):
        try:
            nod = Nodule((float(row["coordX"]), float(row["coordY"]), float(row["coordZ"])), float(row["diameter_mm"]))
        except ValueError:
            raise RadSynthError(f"{path}, line {n}: coordinates and diameter must be numbers.") from None
        out.setdefault(row["seriesuid"], []).append(nod)
    return out


@dataclasses.dataclass
class ReaderNodule:
    series: str
    rating: int
    z_mm: float
    xy_pixel: tuple[float, float]   # mean edge-map position (column x, row y) in the slice's pixel grid


def read_lidc_xml(path: Path) -> list[ReaderNodule]:
    """Every reader's rated nodule (≥ 3 mm: only those have characteristics) in one LIDC XML file."""
    try:
        root = ET.parse(path).getroot()
    except (ET.ParseError, OSError):
        return []
    series = root.findtext(f"{NS}ResponseHeader/{NS}SeriesInstanceUid")
    if not series:
        return []
    out = []
    for nod in root.iter(f"{NS}unblindedReadNodule"):
        rating = nod.findtext(f"{NS}characteristics/{NS}malignancy")
        if rating is None or not rating.strip().isdigit():
            continue
        zs, xs, ys = [], [], []
        for roi in nod.findall(f"{NS}roi"):
            z = roi.findtext(f"{NS}imageZposition")
            for edge in roi.findall(f"{NS}edgeMap"):
                xs.append(float(edge.findtext(f"{NS}xCoord")))
                ys.append(float(edge.findtext(f"{NS}yCoord")))
            if z is not None:
                zs.append(float(z))
        if zs and xs:
            out.append(ReaderNodule(series.strip(), int(rating), float(np.mean(zs)), (float(np.mean(xs)),
                                                                                     float(np.mean(ys)))))
    return out


def reader_position(ct: Volume, r: ReaderNodule) -> np.ndarray:
    """LPS position of a reader's nodule: pixel (x, y) on the axial slice at height z of the CT's grid."""
    k = float(physical_to_continuous_index(ct, np.array([[0.0, 0.0, r.z_mm]]))[0, 0])
    return ct.index_to_physical(np.array([[k, r.xy_pixel[1], r.xy_pixel[0]]]))[0][:2].tolist() + [r.z_mm]


def attach_ratings(ct: Volume, nodules: list[Nodule], readers: list[ReaderNodule]) -> int:
    """Give each reader's rating to the nearest annotated nodule within its radius (at least MATCH_MIN_MM);
    returns how many ratings found a nodule."""
    matched = 0
    centres = np.array([n.center_lps for n in nodules]) if nodules else np.zeros((0, 3))
    for r in readers:
        if not len(centres):
            break
        pos = np.asarray(reader_position(ct, r))
        d = np.linalg.norm(centres - pos, axis=1)
        i = int(np.argmin(d))
        if d[i] <= max(nodules[i].diameter_mm / 2, MATCH_MIN_MM):
            nodules[i].ratings.append(r.rating)
            matched += 1
    return matched


def two_means_threshold(values: np.ndarray, iterations: int = 20) -> float:
    """The midpoint of two 1-D k-means centres (seed 001's "manual Otsu"), in numpy."""
    lo, hi = float(np.percentile(values, 10)), float(np.percentile(values, 90))
    for _ in range(iterations):
        t = (lo + hi) / 2
        a, b = values[values < t], values[values >= t]
        if not len(a) or not len(b):
            break
        lo, hi = float(a.mean()), float(b.mean())
    return (lo + hi) / 2


def nodule_mask(ct: Volume, nodule: Nodule) -> np.ndarray:
    """Sphere of the annotated diameter (mm, direction-aware) refined to its dense part by a 2-means threshold; the
    plain sphere if the refinement loses the centre."""
    c = physical_to_continuous_index(ct, np.asarray([nodule.center_lps]))[0]
    r_vox = nodule.diameter_mm / 2 / np.asarray(ct.spacing)[::-1]
    lo = np.maximum(np.floor(c - r_vox - 2), 0).astype(int)
    hi = np.minimum(np.ceil(c + r_vox + 3), ct.shape).astype(int)
    sub = np.indices(hi - lo).reshape(3, -1).T + lo
    dist = np.linalg.norm((ct.index_to_physical(sub) - np.asarray(nodule.center_lps)), axis=1)
    sphere_sub = (dist <= nodule.diameter_mm / 2).reshape(hi - lo)
    out = np.zeros(ct.shape, bool)
    if not sphere_sub.any():
        ci = tuple(np.clip(np.round(c).astype(int), 0, np.asarray(ct.shape) - 1))
        out[ci] = True
        return out
    block = ct.array[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]].astype(np.float32)
    grown = ndimage.binary_dilation(sphere_sub)
    t = two_means_threshold(block[grown])
    dense = sphere_sub & (block >= t)
    lab, _ = ndimage.label(dense)
    ci = tuple(np.clip(np.round(c).astype(int) - lo, 0, np.asarray(hi - lo) - 1))
    keep = (lab == lab[ci]) if lab[ci] > 0 else sphere_sub
    out[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]] = keep
    return out


def _find(root: Path, name: str, exclude: Optional[Path] = None) -> Optional[Path]:
    for p in root.rglob(name):
        if exclude is None or exclude not in p.parents:
            return p
    return None


def prepare(root: Path | str, out: Path | str, limit: Optional[int] = None,
            progress=None) -> dict:
    """Prepare every annotated series found under ``root`` (see the module docstring); returns the index."""
    from ..pipelines.inpaint.auto_map import auto_map

    root, out = Path(root), Path(out)
    ann = root / "annotations.csv"
    if not ann.is_file():
        raise RadSynthError(f"No annotations.csv in {root}: this is not a LUNA16 folder (see "
                            "radsynth/train/prepare_lidc.py for the layout).")
    nodules_by_series = read_annotations(ann)
    seg_dir = root / "seg-lungs-LUNA16"
    readers: dict[str, list[ReaderNodule]] = {}
    for xml in root.rglob("*.xml"):
        for r in read_lidc_xml(xml):
            readers.setdefault(r.series, []).append(r)
    out.mkdir(parents=True, exist_ok=True)
    cases, skipped = [], []
    series = sorted(nodules_by_series)[:limit] if limit else sorted(nodules_by_series)
    for n, uid in enumerate(series):
        image = _find(root, f"{uid}.mhd", exclude=seg_dir)
        if image is None:
            skipped.append(uid)
            continue
        ct = read_volume(image)
        nodules = nodules_by_series[uid]
        matched = attach_ratings(ct, nodules, readers.get(uid, []))
        seg = seg_dir / f"{uid}.mhd"
        if seg.is_file():
            lungs = read_volume(seg)
            if not lungs.same_grid(ct):
                raise RadSynthError(f"The lung mask {seg} is not on its CT's grid.")
            masks = {L.BODY: body_mask(ct)}
            masks.update({ours: lungs.array == theirs for theirs, ours in LUNA_LUNG_VALUES.items()})
            source = "seg-lungs-LUNA16"
        else:
            auto = auto_map(ct).map.array
            masks = {v: auto == v for v in (L.BODY, L.LEFT_LUNG, L.RIGHT_LUNG, L.TRACHEA)}
            source = "auto_map"
        entries = []
        for nod in nodules:
            m = nodule_mask(ct, nod)
            masks[nod.label] = masks.get(nod.label, np.zeros(ct.shape, bool)) | m
            centre_k = int(np.round(physical_to_continuous_index(ct, np.asarray([nod.center_lps]))[0, 0]))
            entries.append({"center_lps": list(nod.center_lps), "diameter_mm": nod.diameter_mm,
                            "ratings": nod.ratings, "malignancy": nod.malignancy, "label": L.BY_VALUE[nod.label].name,
                            "voxels": int(m.sum()), "center_slice": centre_k})
        label_map = L.compose(masks, ct.shape)
        map_path = out / f"{uid}.nrrd"
        write_volume(ct.label_like(label_map), map_path)
        lung_slices = np.flatnonzero(np.isin(label_map, (L.LEFT_LUNG, L.RIGHT_LUNG)).any(axis=(1, 2)))
        nodule_slices = set(np.flatnonzero(np.isin(label_map, L.NODULES).any(axis=(1, 2))).tolist())
        healthy = [int(k) for k in lung_slices if k not in nodule_slices][::HEALTHY_STRIDE]
        cases.append({"seriesuid": uid, "image": str(image), "map": str(map_path), "lungs_from": source,
                      "nodules": entries, "ratings_matched": matched,
                      "ratings_unmatched": len(readers.get(uid, [])) - matched,
                      "nodule_slices": sorted({e["center_slice"] for e in entries}), "healthy_slices": healthy})
        if progress is not None:
            progress((n + 1) / len(series), uid)
    if not cases:
        raise RadSynthError(f"None of the {len(series)} annotated series has its image (<seriesuid>.mhd) under {root}.")
    index = {"source": str(root), "labels": {lab.value: lab.name for lab in L.LABELS},
             "malignant_from": MALIGNANT_FROM, "cases": cases, "missing_images": skipped}
    (out / "index.json").write_text(json.dumps(index, indent=2) + "\n")
    return index


def main(argv: Optional[list[str]] = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("root", type=Path, help="LUNA16 folder (annotations.csv, subset*/, seg-lungs-LUNA16/, XML)")
    ap.add_argument("out", type=Path)
    ap.add_argument("--limit", type=int, default=None, help="at most this many series")
    a = ap.parse_args(argv)
    index = prepare(a.root, a.out, a.limit, progress=lambda f, s: print(f"{100 * f:5.1f} % {s}", flush=True))
    print(f"{len(index['cases'])} series → {a.out}/index.json")


if __name__ == "__main__":
    main()
