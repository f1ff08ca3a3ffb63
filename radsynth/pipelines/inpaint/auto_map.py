"""A body / left lung / right lung / trachea map from the CT itself: thresholds and morphology, no network.

Seed 001 took lungs and trachea from LUNA16's lung masks; a user's CT has none, so the map is built here:

* body and aerated lung from :mod:`radsynth.anatomy` (the one definition every module uses);
* **trachea**: the airway above the carina. On the topmost axial slices it is the small air-filled component
  closest to the body's midline; it is followed down slice by slice (the component overlapping the one above)
  until it divides into the two main bronchi (the carina), grows into lung, or ends;
* **left and right lung**: the lungs without the trachea, as 3D connected parts. When the two lungs touch (an
  anterior junction line at this threshold, or bronchi still joined), the lungs are eroded in-plane until they
  fall apart and each voxel goes to the part it is nearest to; if they never do, they are cut at the midline.
  Which part is left is read from LPS geometry (+x is the patient's left), not from array order;
* holes in each lung slice (vessels, a nodule inside the lung) are filled so the map's lungs are lungs, not air.

A nodule map (the real tumour label, or what the user paints) is composed on top, with the label scheme's
priorities (:func:`radsynth.pipelines.inpaint.labels.compose`).
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import numpy as np
from scipy import ndimage

from ...anatomy import LUNG_HU, body_mask, lung_mask
from ...errors import InvalidImageError
from ...geometry import axial_axis
from ...volume import Volume, check_ct, mask_on_grid
from . import labels

#: trachea cross-section on an axial slice: adults ~1.5–2.5 cm across (2–5 cm²); wider is lung or a bifurcation
TRACHEA_MIN_MM2 = 20.0
TRACHEA_MAX_MM2 = 700.0
#: the trachea starts within this distance of the body's midline (left–right), and this far from the top slice
TRACHEA_MIDLINE_MM = 30.0
TRACHEA_SEARCH_MM = 60.0
#: a slice's airway component that grows beyond this share of the one above has met lung
TRACHEA_GROWTH = 2.5
#: each lung part keeps at least this share of the lungs when judging a split
SPLIT_MIN_SHARE = 0.10
MAX_EROSION = 12


@dataclasses.dataclass
class AutoMap:
    map: Volume                       # uint8 label map on the CT's grid (labels.LABELS values)
    trachea_slices: tuple[int, int]   # first and last axial slice index of the trachea; (-1, -1) if none found
    split: str                        # how the lungs were split: "components", "erosion N", "midline" or "none"
    warnings: list[str]


def _slice_axis_ok(ct: Volume) -> None:
    if axial_axis(ct) != 0:
        raise InvalidImageError("The automatic map works on axial slices, but this volume's slices are not axial "
                                "(its k axis is not head–foot). Reformat (resample) it to axial slices first.")


def _x_lps(ct: Volume, kji: np.ndarray) -> np.ndarray:
    return ct.index_to_physical(np.atleast_2d(kji))[:, 0]


def _superior_order(ct: Volume) -> list[int]:
    """Axial slice indices from head to feet."""
    top = ct.index_to_physical(np.array([[ct.shape[0] - 1, 0, 0]]))[0, 2]
    bottom = ct.index_to_physical(np.array([[0, 0, 0]]))[0, 2]
    order = list(range(ct.shape[0]))
    return order[::-1] if top > bottom else order


def find_trachea(ct: Volume, body: np.ndarray) -> tuple[np.ndarray, tuple[int, int]]:
    """Boolean trachea mask (above the carina) and its first/last slice; empty if no trachea is seen."""
    pixel_mm2 = float(ct.spacing[0] * ct.spacing[1])
    air = body & (ct.array < LUNG_HU)
    order = _superior_order(ct)
    out = np.zeros(ct.shape, bool)
    start, current = None, None
    search = max(1, int(round(TRACHEA_SEARCH_MM / ct.spacing[2])))
    for k in order[:search]:
        lab, n = ndimage.label(air[k])
        if n == 0:
            continue
        areas = np.bincount(lab.ravel())[1:] * pixel_mm2
        mid_x = _x_lps(ct, np.r_[k, np.argwhere(body[k]).mean(0)][None])[0]
        best, best_d = None, TRACHEA_MIDLINE_MM
        for c in np.flatnonzero((areas >= TRACHEA_MIN_MM2) & (areas <= TRACHEA_MAX_MM2)) + 1:
            cj, ci = np.argwhere(lab == c).mean(0)
            d = abs(_x_lps(ct, np.array([[k, cj, ci]]))[0] - mid_x)
            if d < best_d:
                best, best_d = c, d
        if best is not None:
            start, current = k, lab == best
            break
    if start is None:
        return out, (-1, -1)
    out[start] = current
    last = start
    for k in order[order.index(start) + 1:]:
        lab, _ = ndimage.label(air[k])
        touching = np.unique(lab[ndimage.binary_dilation(current, iterations=2) & (lab > 0)])
        if len(touching) != 1:        # two: the main bronchi (the carina); none: the airway ended
            break
        comp = lab == touching[0]
        area = comp.sum() * pixel_mm2
        if area > TRACHEA_MAX_MM2 or area > TRACHEA_GROWTH * current.sum() * pixel_mm2:
            break                     # the component joins lung on this slice
        out[k], current, last = comp, comp, k
    return out, (min(start, last), max(start, last))


def _nearest_part(lungs: np.ndarray, seeds: np.ndarray) -> np.ndarray:
    """Each lung voxel labelled with the seed part (1, 2) it is nearest to (in-plane distances)."""
    _, idx = ndimage.distance_transform_edt(seeds == 0, return_indices=True, sampling=(1e6, 1.0, 1.0))
    nearest = seeds[tuple(idx)]
    return np.where(lungs, nearest, 0)


def split_lungs(ct: Volume, lungs: np.ndarray) -> tuple[np.ndarray, np.ndarray, str]:
    """(left, right, method) from the lung mask (trachea removed)."""
    if not lungs.any():
        return lungs, lungs, "none"
    total = lungs.sum()
    in_plane = np.zeros((3, 3, 3), bool)
    in_plane[1] = ndimage.generate_binary_structure(2, 1)
    parts, method = None, None
    work = lungs
    for n in range(MAX_EROSION + 1):
        if n:
            work = ndimage.binary_erosion(work, in_plane)
        lab, count = ndimage.label(work)
        if count >= 2:
            sizes = np.bincount(lab.ravel())[1:]
            big = np.argsort(sizes)[::-1][:2] + 1
            if sizes[big[1] - 1] >= SPLIT_MIN_SHARE * total:
                seeds = np.where(lab == big[0], 1, 0) + np.where(lab == big[1], 2, 0)
                # eroded rims and small stray parts go to the nearer lung
                parts = _nearest_part(lungs, seeds)
                method = "components" if n == 0 else f"erosion {n}"
                break
    if parts is None:
        kji = np.argwhere(lungs)
        x = _x_lps(ct, kji)
        mid = float(np.median(x))   # lungs of similar size: the median of their voxels' x is near the midline
        left = np.zeros_like(lungs)
        left[tuple(kji[x > mid].T)] = True
        return left, lungs & ~left, "midline"
    x = [_x_lps(ct, np.argwhere(parts == p).mean(0)[None])[0] for p in (1, 2)]
    left_id = 1 if x[0] > x[1] else 2   # LPS: +x is the patient's left
    return parts == left_id, parts == (3 - left_id), method


def _fill_slices(mask: np.ndarray) -> np.ndarray:
    out = np.empty_like(mask)
    for k in range(mask.shape[0]):
        out[k] = ndimage.binary_fill_holes(mask[k])
    return out


def auto_map(ct: Volume, nodules: Optional[Volume] = None, nodule_value: int = labels.NODULE) -> AutoMap:
    """The label map of ``ct`` (body, lungs, trachea), with ``nodules`` (any label volume; every non-zero voxel)
    drawn on top as ``nodule_value``."""
    check_ct(ct)
    _slice_axis_ok(ct)
    if nodule_value not in labels.NODULES:
        raise ValueError(f"nodule_value must be one of {labels.NODULES}")
    warnings: list[str] = []
    body = body_mask(ct)
    lung = lung_mask(ct, body)
    trachea, span = find_trachea(ct, body)
    if span == (-1, -1):
        warnings.append("No trachea was found on the top slices (the scan may start below the carina); the map has "
                        "no trachea.")
    left, right, split = split_lungs(ct, lung & ~trachea)
    if split == "none":
        warnings.append("No aerated lung was found: the map has body and background only.")
    elif split == "midline":
        warnings.append("The lungs could not be separated by shape; they were divided at the midline.")
    left, right = _fill_slices(left), _fill_slices(right)
    right &= ~left
    masks = {labels.BODY: body, labels.LEFT_LUNG: left & body, labels.RIGHT_LUNG: right & body,
             labels.TRACHEA: trachea}
    if nodules is not None:
        masks[nodule_value] = mask_on_grid(nodules, ct).array > 0
    label_map = labels.compose(masks, ct.shape)
    return AutoMap(ct.label_like(label_map), span, split, warnings)


def run_auto_map(ctx, image: Volume, mask: Optional[Volume] = None, **o):
    """Registry run function of ``auto-map``: the map as the result's volume and mask, a table of its labels."""
    import time

    from ...result import Result

    t0 = time.perf_counter()
    value = labels.value_of(o.get("nodule_label", "nodule"))
    result = auto_map(image, o.get("nodules"), value)
    m = result.map.array
    voxel_ml = float(np.prod(image.spacing)) / 1000.0
    counts = np.bincount(m.ravel(), minlength=len(labels.LABELS))
    rows = [{"value": lab.value, "name": lab.name, "voxels": int(counts[lab.value]),
             "volume_ml": round(float(counts[lab.value]) * voxel_ml, 2)} for lab in labels.LABELS
            if counts[lab.value]]
    settings = {"trachea_slices": list(result.trachea_slices), "lung_split": result.split,
                "nodule_label": labels.BY_VALUE[value].name}
    return Result("auto-map", result.map, result.map, {"labels": rows}, {"auto_map": round(time.perf_counter() - t0, 3)},
                  {}, settings, list(result.warnings))
