"""Held-out healthy lung regions for removal benchmarks: same hemithorax rule as training (radsynth.train.data),
so the texture model never trained on tissue within these crops."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from ..anatomy import lung_mask
from ..volume import Volume


def ellipsoid(volume: Volume, center_kji: np.ndarray, radii_mm: np.ndarray) -> np.ndarray:
    sp = np.asarray(volume.spacing)[::-1]
    grids = np.ogrid[tuple(slice(0, s) for s in volume.shape)]
    r = sum(((g - c) * s / rad) ** 2 for g, c, s, rad in zip(grids, center_kji, sp, radii_mm))
    return r <= 1.0


def heldout_regions(volume: Volume, n: int, seed: int, crop_half_mm: float = 48.0,
                    diameter_mm: tuple[float, float] = (10.0, 25.0)) -> list[np.ndarray]:
    """n lesion-sized ellipsoid masks in aerated lung of the low-i half, whole crop box clear of the midline."""
    rng = np.random.default_rng(seed)
    sp = np.asarray(volume.spacing)[::-1]
    lung = ndimage.binary_erosion(lung_mask(volume), iterations=3)
    mid = volume.shape[2] // 2
    limit_i = mid - int(np.ceil(crop_half_mm / sp[2]))
    margin = np.ceil(crop_half_mm / sp).astype(int)
    allowed = np.zeros_like(lung)
    allowed[margin[0]:-margin[0] or None, margin[1]:-margin[1], margin[2]:limit_i] = True
    candidates = np.argwhere(lung & allowed)
    if len(candidates) == 0:
        return []
    masks = []
    for idx in rng.choice(len(candidates), size=min(n, len(candidates)), replace=False):
        d = rng.uniform(*diameter_mm)
        masks.append(ellipsoid(volume, candidates[idx], d / 2 * rng.uniform(0.7, 1.0, 3)))
    return masks
