"""Put a generated frame mask into a CT: physical scaling, rasterization on the image grid, organ constraint.

The frame's axes are the image's axes (the frame carries no orientation of its own), and the mask's centroid goes
to the clicked point. Each image voxel's tumour coverage is the mean of the linearly interpolated frame mask over
sub-samples spaced finer than the frame voxel, so a 5 mm slice sees the tumour's real extent across its thickness.
The N most covered voxels, N = requested volume / voxel volume, become the tumour: that keeps the requested volume
on any grid (a 0.5 threshold alone drifts by tens of % when slices are thick relative to the tumour).
"""

from __future__ import annotations

import json

import numpy as np
from scipy import ndimage
from scipy.signal import fftconvolve

from ..errors import InvalidMaskError, RadSynthError
from ..shape_features import fast_shape_features
from ..geometry import physical_to_voxel_position
from ..volume import Volume

#: refuse when less than this fraction of the tumour can be kept inside the organ after moving it
MIN_KEPT = 0.9
MAX_SUBSAMPLES = 6
PLACEMENT_KEY = "RadSynth.Placement"


def _coverage(mask: np.ndarray, anchor: np.ndarray, centre_kji: np.ndarray, spacing_kji: np.ndarray,
              voxel_mm: float) -> tuple[np.ndarray, np.ndarray]:
    """(box origin in image kji, per-voxel coverage in [0, 1] over the box around the tumour)."""
    idx = np.argwhere(mask)
    scale = voxel_mm / spacing_kji                            # image voxels per frame voxel, per axis
    lo = np.floor(centre_kji + (idx.min(0) - 1 - anchor) * scale).astype(int) - 1
    hi = np.ceil(centre_kji + (idx.max(0) + 1 - anchor) * scale).astype(int) + 2
    axes = []
    for a in range(3):
        n = int(np.clip(np.ceil(spacing_kji[a] / voxel_mm), 1, MAX_SUBSAMPLES))
        sub = (np.arange(n) + 0.5) / n - 0.5
        q = (np.arange(lo[a], hi[a])[:, None] + sub[None, :]).ravel()
        axes.append((q - centre_kji[a]) / scale[a] + anchor[a])
    pts = np.meshgrid(*axes, indexing="ij")
    f = ndimage.map_coordinates(mask.astype(np.float32), pts, order=1, mode="constant", cval=0.0)
    shape = hi - lo
    subs = [len(axes[a]) // shape[a] for a in range(3)]
    return lo, f.reshape(shape[0], subs[0], shape[1], subs[1], shape[2], subs[2]).mean(axis=(1, 3, 5))


def _inside(lo: np.ndarray, shape, image_shape, organ: np.ndarray | None) -> np.ndarray:
    """Allowed voxels over a box that may stick out of the image: in the image and, if given, in the organ."""
    out = np.zeros(shape, dtype=bool)
    src_lo = np.maximum(lo, 0)
    src_hi = np.minimum(lo + np.asarray(shape), image_shape)
    if np.any(src_hi <= src_lo):
        return out
    dst = tuple(slice(a - b, c - b) for a, b, c in zip(src_lo, lo, src_hi))
    src = tuple(slice(a, c) for a, c in zip(src_lo, src_hi))
    out[dst] = True if organ is None else organ[src]
    return out


def _best_shift(tumour: np.ndarray, lo: np.ndarray, margin: np.ndarray, organ: np.ndarray, spacing: np.ndarray,
                centre: np.ndarray) -> tuple[np.ndarray, float]:
    """Smallest voxel shift (within ±margin) that keeps the most of the tumour inside the organ."""
    big = _inside(lo - margin, np.asarray(tumour.shape) + 2 * margin, organ.shape, organ)
    kept = np.round(fftconvolve(big.astype(np.float32), tumour[::-1, ::-1, ::-1].astype(np.float32), mode="valid"))
    frac = kept / tumour.sum()
    shifts = np.stack(np.meshgrid(*[np.arange(-m, m + 1) for m in margin], indexing="ij"), -1)
    dist = np.sqrt(((shifts * spacing) ** 2).sum(-1))
    c = np.round(centre).astype(int) + shifts
    ok = np.all((c >= 0) & (c < np.asarray(organ.shape)), axis=-1)
    ok[ok] = organ[tuple(c[ok].T)]          # the moved centre must stay inside the organ
    frac = np.where(ok, frac, -1.0)
    best = frac.max()
    pick = np.where(frac >= min(best, 1.0) - 0.005, dist, np.inf)
    i = np.unravel_index(np.argmin(pick), pick.shape)
    return shifts[i], float(frac[i])


def place_shape(image: Volume, center_lps, mask32: np.ndarray, voxel_mm: float,
                organ: np.ndarray | None = None) -> Volume:
    """Label volume (uint8, 1 = tumour) on ``image``'s grid with the frame mask scaled to ``voxel_mm`` mm per frame
    voxel and centred on ``center_lps``. With an ``organ`` mask (image grid) the tumour is kept inside it: moved
    toward the interior when it sticks out, the remainder clipped; refused if less than 90% would remain.
    A ``RadSynth.Placement`` metadata entry (JSON) reports the shift in mm and the kept fraction."""
    mask = np.asarray(mask32) > 0
    if mask.ndim != 3 or not mask.any():
        raise InvalidMaskError("The tumour shape is empty; generate a shape first.")
    if not (isinstance(voxel_mm, (int, float, np.floating)) and np.isfinite(voxel_mm) and voxel_mm > 0):
        raise RadSynthError(f"The shape's voxel size must be a positive number of mm (got {voxel_mm!r}).")
    spacing = np.asarray(image.spacing, dtype=float)[::-1]
    centre = physical_to_voxel_position(image, center_lps)
    if organ is not None:
        organ = np.asarray(organ) > 0
        if organ.shape != image.shape:
            raise InvalidMaskError(f"The organ mask (size {organ.shape}) is not on the image grid {image.shape}.")
        if not organ[tuple(np.clip(np.round(centre).astype(int), 0, np.asarray(image.shape) - 1))]:
            raise InvalidMaskError("The selected point is outside the selected organ; click inside the organ.")
    volume = fast_shape_features(mask, (float(voxel_mm),) * 3)["shape_MeshVolume"]
    voxel_volume = float(np.prod(spacing))
    if volume < voxel_volume:
        raise InvalidMaskError(f"The requested tumour ({volume / 1000:.4g} mL) is smaller than one image voxel "
                               f"({voxel_volume / 1000:.4g} mL); choose a larger volume.")
    anchor = np.argwhere(mask).mean(0)
    lo, cover = _coverage(mask, anchor, centre, spacing, float(voxel_mm))
    n = int(round(volume / voxel_volume))
    order = np.argsort(-cover, axis=None, kind="stable")[:n]
    tumour = np.zeros(cover.shape, dtype=bool)
    tumour.flat[order[cover.flat[order] > 0]] = True
    shift, kept = np.zeros(3, dtype=int), 1.0
    allowed = _inside(lo, tumour.shape, image.shape, organ)
    if organ is None:
        if (tumour & ~allowed).any():
            raise InvalidMaskError("The tumour would extend beyond the edge of the image; click further from the "
                                   "edge or choose a smaller volume.")
    elif (tumour & ~allowed).any():
        radius_mm = np.sqrt((((np.argwhere(mask) - anchor) * voxel_mm) ** 2).sum(1)).max()
        margin = np.ceil(radius_mm / spacing).astype(int)
        shift, kept = _best_shift(tumour, lo, margin, organ, spacing, centre)
        if kept < MIN_KEPT:
            raise InvalidMaskError(
                f"The tumour does not fit inside the selected organ: at most {kept:.0%} of it stays inside even "
                f"after moving it by up to {radius_mm:.0f} mm. Choose a smaller volume or a point deeper inside "
                "the organ.")
        lo = lo + shift
        tumour &= _inside(lo, tumour.shape, image.shape, organ)
    out = np.zeros(image.shape, dtype=np.uint8)
    src_lo = np.maximum(lo, 0)
    src_hi = np.minimum(lo + np.asarray(tumour.shape), image.shape)
    out[tuple(slice(a, b) for a, b in zip(src_lo, src_hi))] = \
        tumour[tuple(slice(a - l, b - l) for a, b, l in zip(src_lo, src_hi, lo))]
    result = image.with_array(out)
    result.metadata = {PLACEMENT_KEY: json.dumps({
        "shift_lps_mm": [round(float(v), 2) for v in
                         np.asarray(image.direction, dtype=float).reshape(3, 3) @ (shift * spacing)[::-1]],
        "kept_fraction": round(kept, 4), "voxels": int(out.sum()),
        "volume_ml": round(float(out.sum()) * voxel_volume / 1000.0, 4)})}
    return result
