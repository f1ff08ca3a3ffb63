"""Body and aerated-lung masks of a CT in Hounsfield units: the one definition every module uses.

The body is what the air around the patient does not reach: air connected to the sides of the image (in the axial
plane) is outside; the rest, minus anything that only touches the patient through a thin contact (the table,
blankets), is the body. Aerated lung is body air below ``LUNG_HU``: lung parenchyma and the airways joined to it,
without vessels, airway walls or tumour (all above it), and without gas in the stomach or bowel (separate, small).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from .geometry import axial_axis
from .volume import Volume

AIR_HU = -500.0     # air around the patient and in the lungs is below; skin, fat and the table shell are above
LUNG_HU = -400.0    # aerated parenchyma is below; vessels, airway walls and tumour are above
#: a separate air pocket counts as lung if it holds at least this share of the largest one (stomach gas ~2 %)
MIN_LUNG_SHARE = 0.10
MIN_LUNG_ML = 100.0   # stomach or bowel gas alone (an abdomen-only image) is not lung


def _in_plane_border(shape: tuple[int, ...], axis: int) -> np.ndarray:
    """True on the four faces of the volume that bound each axial slice (not the top and bottom slices)."""
    border = np.zeros(shape, bool)
    for a in range(3):
        if a == axis:
            continue
        lo = [slice(None)] * 3
        hi = [slice(None)] * 3
        lo[a], hi[a] = 0, -1
        border[tuple(lo)] = border[tuple(hi)] = True
    return border


def _largest_component(mask: np.ndarray) -> np.ndarray:
    labels, n = ndimage.label(mask)
    if n == 0:
        return mask
    sizes = np.bincount(labels.ravel())[1:]
    return labels == (1 + int(np.argmax(sizes)))


def body_mask(volume: Volume) -> np.ndarray:
    """Boolean (k, j, i) mask of the patient's body, lungs and airways included."""
    axis = axial_axis(volume)
    air = volume.array < AIR_HU
    labels, _ = ndimage.label(air)
    # the top and bottom slices cut through the patient (trachea, lungs): only the in-plane sides are outside
    outside_labels = np.unique(labels[_in_plane_border(air.shape, axis) & air])
    outside = np.isin(labels, outside_labels[outside_labels > 0])
    del labels
    # an in-plane opening cuts thin contacts (table shell, blanket folds) before keeping the largest part
    structure = np.zeros((3, 3, 3), bool)
    structure[tuple(1 if a == axis else slice(None) for a in range(3))] = True
    body = ndimage.binary_opening(~outside, structure=structure, iterations=2)
    return _largest_component(body)


def lung_mask(volume: Volume, body: np.ndarray | None = None) -> np.ndarray:
    """Boolean (k, j, i) mask of aerated lung (with the airways joined to it) inside the body.

    ``body`` may be passed when the caller already has :func:`body_mask`. An image without lungs (abdomen,
    head) gives an empty mask.
    """
    if body is None:
        body = body_mask(volume)
    candidate = body & (volume.array < LUNG_HU)
    labels, n = ndimage.label(candidate)
    if n == 0:
        return candidate
    voxel_ml = float(np.prod(volume.spacing)) / 1000.0
    sizes = np.bincount(labels.ravel())[1:]
    keep = sizes >= max(MIN_LUNG_SHARE * sizes.max(), MIN_LUNG_ML / voxel_ml)
    return np.isin(labels, 1 + np.flatnonzero(keep))
