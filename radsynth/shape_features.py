"""Fast pyradiomics-equivalent shape features straight from a binary mask, for live slider feedback.

Same definitions and the same marching-cubes kernel (pyradiomics' compiled ``cShape``) as
``radsynth.radiomics.shape_features``, minus the image handling, resampling and feature-class machinery:
a few ms on a 64³ mask. Values are in mm / mm² / mm³ on the mask's own grid.
"""

from __future__ import annotations

import numpy as np
from radiomics import cShape

from .errors import InvalidMaskError

SHAPE_NAMES = (
    "shape_Elongation", "shape_Flatness", "shape_LeastAxisLength", "shape_MajorAxisLength",
    "shape_Maximum2DDiameterColumn", "shape_Maximum2DDiameterRow", "shape_Maximum2DDiameterSlice",
    "shape_Maximum3DDiameter", "shape_MeshVolume", "shape_MinorAxisLength", "shape_Sphericity",
    "shape_SurfaceArea", "shape_SurfaceVolumeRatio", "shape_VoxelVolume",
)


def fast_shape_features(mask: np.ndarray, spacing_kji) -> dict[str, float]:
    """``mask`` (k, j, i), any non-zero voxel inside; ``spacing_kji`` in mm in the same axis order."""
    inside = np.asarray(mask) > 0
    idx = np.argwhere(inside)
    if len(idx) == 0:
        raise InvalidMaskError("The mask is empty: there is no shape to measure.")
    lo, hi = idx.min(0), idx.max(0) + 1
    # one voxel of zero padding, as pyradiomics does, so the mesh closes at the bounding box
    padded = np.pad(inside[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]], 1)
    spacing = np.asarray(spacing_kji, dtype=np.float64)
    area, volume, diameters = cShape.calculate_coefficients(padded.astype(np.int8), spacing)

    coords = (idx - idx.mean(0)) * spacing / np.sqrt(len(idx))
    eig = np.clip(np.sort(np.linalg.eigvalsh(coords.T @ coords)), 0.0, None)  # least, minor, major
    least, minor, major = eig
    voxel_volume = float(len(idx) * np.prod(spacing))
    return {
        "shape_Elongation": float(np.sqrt(minor / major)) if major > 0 else 0.0,
        "shape_Flatness": float(np.sqrt(least / major)) if major > 0 else 0.0,
        "shape_LeastAxisLength": float(4 * np.sqrt(least)),
        "shape_MajorAxisLength": float(4 * np.sqrt(major)),
        "shape_Maximum2DDiameterColumn": float(diameters[1]),
        "shape_Maximum2DDiameterRow": float(diameters[2]),
        "shape_Maximum2DDiameterSlice": float(diameters[0]),
        "shape_Maximum3DDiameter": float(diameters[3]),
        "shape_MeshVolume": float(volume),
        "shape_MinorAxisLength": float(4 * np.sqrt(minor)),
        "shape_Sphericity": float((36 * np.pi * volume ** 2) ** (1 / 3) / area) if area > 0 else 0.0,
        "shape_SurfaceArea": float(area),
        "shape_SurfaceVolumeRatio": float(area / volume) if volume > 0 else 0.0,
        "shape_VoxelVolume": voxel_volume,
    }
