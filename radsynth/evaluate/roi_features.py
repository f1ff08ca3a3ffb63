"""Radiomics features of small region ROIs, the samples of the Fréchet radiomics distance and of bMMD².

A volume gives many samples: on each evaluated axial slice, square patches (``PATCH_MM`` a side) laid on a fixed grid,
kept where the region (soft tissue of the body, or aerated lung: :func:`regions`) fills at least ``MIN_FILL`` of the
square; the ROI is the region inside the square. Features come from pyradiomics through
:func:`radsynth.radiomics.texture_features` (the project's parameter file: 1.5 mm grid, 25 HU bins), on a crop of the
volume around the patch, so one ROI costs ~0.15 s instead of ~1.5 s on the whole 512² CT.

Only ``FRECHET_FEATURES`` (15 of the 93) enter the distances: a Gaussian fit needs more samples than dimensions, and a
few dozen patches per set would leave a 93-dimensional covariance rank-deficient. They cover intensity (mean, 10th and
90th percentile, spread), histogram shape (skewness, kurtosis, entropy) and texture (GLCM, GLRLM, GLSZM, GLDM, NGTDM).
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence

import numpy as np

from ..anatomy import body_mask, lung_mask
from ..errors import RadSynthError
from ..volume import Volume

PATCH_MM = 30.0
MIN_FILL = 0.6
#: native voxels of context kept around a patch: pyradiomics' B-spline resampling sees real tissue at the border
CONTEXT_MM = 15.0
FRECHET_FEATURES = ("firstorder_Mean", "firstorder_10Percentile", "firstorder_90Percentile",
                    "firstorder_RobustMeanAbsoluteDeviation", "firstorder_Skewness", "firstorder_Kurtosis",
                    "firstorder_Entropy", "glcm_Contrast", "glcm_Correlation", "glcm_Idm", "glcm_JointEntropy",
                    "glrlm_RunEntropy", "glszm_ZoneEntropy", "gldm_DependenceEntropy", "ngtdm_Coarseness")
REGIONS = ("soft_tissue", "lung")

Log = Callable[[str], None]


def regions(volume: Volume) -> dict[str, np.ndarray]:
    """{soft_tissue: body without aerated lung, lung: aerated lung} of a CT (``radsynth.anatomy`` thresholds)."""
    body = body_mask(volume)
    try:
        lung = lung_mask(volume, body)
    except RadSynthError:         # no lung found (a small or non-chest crop): soft tissue only
        lung = np.zeros_like(body)
    return {"soft_tissue": body & ~lung, "lung": lung}


def patches(mask: np.ndarray, spacing_xyz: Sequence[float], slices: Optional[Sequence[int]] = None,
            per_slice: int = 8, patch_mm: float = PATCH_MM, min_fill: float = MIN_FILL,
            seed: int = 0) -> list[tuple[int, slice, slice]]:
    """(k, rows, columns) squares of ``patch_mm`` on slices ``slices`` (default all) of a (k, j, i) mask, at most
    ``per_slice`` per slice (a seeded choice among the squares the region fills enough)."""
    rng = np.random.default_rng(seed)
    nj = max(int(round(patch_mm / float(spacing_xyz[1]))), 2)
    ni = max(int(round(patch_mm / float(spacing_xyz[0]))), 2)
    out = []
    for k in (range(mask.shape[0]) if slices is None else slices):
        squares = [(k, slice(j, j + nj), slice(i, i + ni))
                   for j in range(0, mask.shape[1] - nj + 1, nj) for i in range(0, mask.shape[2] - ni + 1, ni)
                   if mask[k, j:j + nj, i:i + ni].mean() >= min_fill]
        if len(squares) > per_slice:
            squares = [squares[n] for n in sorted(rng.choice(len(squares), per_slice, replace=False))]
        out += squares
    return out


def _crop(volume: Volume, k: int, rows: slice, cols: slice) -> tuple[Volume, tuple[slice, slice, slice]]:
    sp = np.asarray(volume.spacing, dtype=float)
    mj, mi = (int(np.ceil(CONTEXT_MM / s)) for s in (sp[1], sp[0]))
    box = (slice(max(k - 2, 0), min(k + 3, volume.shape[0])), slice(max(rows.start - mj, 0), rows.stop + mj),
           slice(max(cols.start - mi, 0), cols.stop + mi))
    start = np.array([[b.start for b in box]])
    origin = tuple(float(v) for v in volume.index_to_physical(start)[0])
    sub = Volume(np.ascontiguousarray(volume.array[box]), origin, tuple(volume.spacing), tuple(volume.direction))
    return sub, box


def roi_features(volume: Volume, mask: np.ndarray, rois: Sequence[tuple[int, slice, slice]],
                 names: Sequence[str] = FRECHET_FEATURES) -> np.ndarray:
    """(len(rois) − refused, len(names)) features of ``mask`` ∩ each square; ROIs pyradiomics refuses (too few
    voxels after resampling) are left out."""
    from ..radiomics import texture_features

    rows = []
    for k, rj, ri in rois:
        sub, box = _crop(volume, k, rj, ri)
        roi = np.zeros(sub.shape, dtype=bool)
        kk = k - box[0].start
        rr = slice(rj.start - box[1].start, rj.stop - box[1].start)
        cc = slice(ri.start - box[2].start, ri.stop - box[2].start)
        roi[kk, rr, cc] = mask[k, rj, ri]
        try:
            f = texture_features(sub, roi)
        except RadSynthError:
            continue
        rows.append([f[n] for n in names])
    out = np.asarray(rows, dtype=np.float64).reshape(len(rows), len(names))
    return out[np.all(np.isfinite(out), axis=1)]


def region_features(volume: Volume, slices: Optional[Sequence[int]] = None, per_slice: int = 8,
                    masks: Optional[dict[str, np.ndarray]] = None, seed: int = 0) -> dict[str, np.ndarray]:
    """{region: (samples, features)} patch features of each region of ``volume`` on ``slices``."""
    masks = regions(volume) if masks is None else masks
    return {name: roi_features(volume, m, patches(m, volume.spacing, slices, per_slice, seed=seed))
            for name, m in masks.items()}
