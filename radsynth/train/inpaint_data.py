"""Training data for the DiffusionInpaint slice models: axial slices at the model's in-plane spacing, each with its
neighbour slice, a mask to fill and (for SDM) its label map.

Masks come in three kinds, mixed by weight (seed 002 trained Palette on organ masks only, which teaches the model to
fill organ-shaped holes and nothing else; a user draws any shape):

* ``random``: Palette-style free-form masks, a few rectangles and brush strokes;
* ``lesion``: one lesion-shaped blob, an ellipse with a smoothly perturbed outline (5–40 mm);
* ``organ``: the region of one structure of the slice's label map (a lung, the body's soft tissue, a nodule),
  grown by a few mm, or its bounding box ("boxed", seed 002's boxed kidneys).

Half the lesion masks are centred on the lung's edge (pleura, mediastinum) when the volume has a map: a tumour
removed there must be refilled with the lung on one side and the chest wall on the other, the case TumorSynth's
removal got wrong. ``healthy`` draws refuse any mask that covers a labelled nodule, so a model trained for healthy
fill never learns to paint a tumour back; with ``avoid_in_context`` they also refuse a crop (or its neighbour slice)
that shows one, so that the tumours of the two training CTs are not part of what the model learns as healthy
anatomy either (lung2's is the removal the project demonstrates).

Every mask leaves at least ``MIN_CONTEXT`` of the crop as context and is never empty.
"""

from __future__ import annotations

import dataclasses
from typing import Optional, Sequence

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from ..errors import RadSynthError
from ..volume import Volume

MASK_KINDS = ("random", "lesion", "organ")
MIN_CONTEXT = 0.4


def random_mask(size: int, rng: np.random.Generator, coverage: tuple[float, float] = (0.05, 0.4)) -> np.ndarray:
    """Free-form mask: 1–3 rectangles and 1–4 brush strokes, retried until its coverage is in ``coverage``."""
    for _ in range(50):
        m = np.zeros((size, size), bool)
        for _ in range(rng.integers(1, 4)):
            h, w = rng.integers(size // 8, size // 2, 2)
            y, x = rng.integers(0, size - h), rng.integers(0, size - w)
            m[y:y + h, x:x + w] = True
        for _ in range(rng.integers(1, 5)):
            pos = rng.uniform(0, size, 2)
            width = rng.uniform(size / 32, size / 10)
            for _ in range(rng.integers(4, 12)):
                step = rng.normal(size=2)
                end = np.clip(pos + step / np.linalg.norm(step) * rng.uniform(size / 16, size / 5), 0, size - 1)
                for t in np.linspace(0, 1, 8):
                    cy, cx = pos + t * (end - pos)
                    yy, xx = np.ogrid[:size, :size]
                    m |= (yy - cy) ** 2 + (xx - cx) ** 2 <= width ** 2
                pos = end
        if coverage[0] <= m.mean() <= coverage[1]:
            return m
    return _centre_square(size, coverage[1])


def _centre_square(size: int, coverage: float) -> np.ndarray:
    m = np.zeros((size, size), bool)
    half = max(1, int(size * np.sqrt(coverage) / 2))
    m[size // 2 - half:size // 2 + half, size // 2 - half:size // 2 + half] = True
    return m


def lesion_mask(size: int, spacing_mm: float, rng: np.random.Generator,
                diameter_mm: tuple[float, float] = (5.0, 40.0), roughness: float = 0.25,
                center: Optional[tuple[float, float]] = None) -> np.ndarray:
    """One lesion-like blob on a ``size`` × ``size`` slice: an ellipse whose outline is perturbed by smooth noise."""
    d = min(rng.uniform(*diameter_mm), size * spacing_mm * np.sqrt(1 - MIN_CONTEXT))
    axes = d / 2 * rng.uniform(0.6, 1.0, 2) / spacing_mm
    angle = rng.uniform(0, np.pi)
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    if center is None:
        lo, hi = axes.max() + 1, size - axes.max() - 2
        center = tuple(rng.uniform(lo, hi, 2)) if hi > lo else ((size - 1) / 2,) * 2
    grid = np.stack(np.meshgrid(np.arange(size) - center[0], np.arange(size) - center[1], indexing="ij"), -1)
    r = np.sqrt((((grid @ rot) / axes) ** 2).sum(-1))
    noise = ndimage.gaussian_filter(rng.normal(size=(size, size)), sigma=max(axes.min() / 2, 1.0))
    noise /= np.abs(noise).max() + 1e-8
    m = r < 1.0 + roughness * noise
    lab, n = ndimage.label(m)
    if n > 1:
        m = lab == (np.argmax(np.bincount(lab.ravel())[1:]) + 1)
    m = ndimage.binary_fill_holes(m)
    return m if m.any() else _centre_square(size, 0.01)


def organ_mask(label_slice: np.ndarray, value: int, spacing_mm: float, rng: np.random.Generator,
               grow_mm: tuple[float, float] = (1.0, 5.0), boxed: bool = False) -> Optional[np.ndarray]:
    """The region of ``value`` on the slice grown by a random few mm, or its bounding box with that margin; None when
    the structure is absent or would leave less than ``MIN_CONTEXT`` of the slice as context."""
    m = label_slice == value
    if not m.any():
        return None
    grow = rng.uniform(*grow_mm)
    if boxed:
        idx = np.argwhere(m)
        pad = int(np.ceil(grow / spacing_mm))
        lo, hi = np.maximum(idx.min(0) - pad, 0), np.minimum(idx.max(0) + pad + 1, m.shape)
        m = np.zeros_like(m)
        m[lo[0]:hi[0], lo[1]:hi[1]] = True
    else:
        m = ndimage.distance_transform_edt(~m, sampling=spacing_mm) <= grow
    return m if m.mean() <= 1 - MIN_CONTEXT else None


# ------------------------------------------------------------------------------------------------------ slices

@dataclasses.dataclass
class SliceVolume:
    """A CT (and optional label map) resampled in-plane to the model spacing, HU → [-1, 1]; slices kept."""
    name: str
    image: np.ndarray                  # (k, j, i) float32 in [-1, 1]
    labels: Optional[np.ndarray]       # (k, j, i) uint8, or None
    body: np.ndarray                   # (k, j, i) bool, where crops may be centred
    spacing: float                     # in-plane mm


def in_plane(volume: Volume, spacing_mm: float, nearest: bool = False, fill: float = -1024.0) -> np.ndarray:
    """``volume`` resampled to ``spacing_mm`` in-plane, its own slices kept (no slice is interpolated)."""
    img = volume.to_sitk()
    size = [int(round(img.GetSize()[d] * img.GetSpacing()[d] / spacing_mm)) for d in (0, 1)] + [img.GetSize()[2]]
    ref = sitk.Image(size, sitk.sitkUInt8)
    ref.SetSpacing((spacing_mm, spacing_mm, img.GetSpacing()[2]))
    ref.SetDirection(img.GetDirection())
    ref.SetOrigin(img.GetOrigin())
    interp = sitk.sitkNearestNeighbor if nearest else sitk.sitkLinear
    out_type = sitk.sitkUInt8 if nearest else sitk.sitkFloat32
    return sitk.GetArrayFromImage(sitk.Resample(img, ref, sitk.Transform(), interp, 0 if nearest else fill, out_type))


def slice_volume(name: str, ct: Volume, labels: Optional[Volume], spacing_mm: float,
                 window: tuple[float, float]) -> SliceVolume:
    from ..anatomy import body_mask
    from ..region import RegionSpec

    spec = RegionSpec((1, 1, 1), (1.0, 1.0, 1.0), window)
    image = spec.normalize(in_plane(ct, spacing_mm)).astype(np.float32)
    lab = None if labels is None else in_plane(labels, spacing_mm, nearest=True)
    body = in_plane(ct.label_like(body_mask(ct)), spacing_mm, nearest=True) > 0
    return SliceVolume(name, image, lab, body, spacing_mm)


@dataclasses.dataclass
class SliceSample:
    image: np.ndarray       # (S, S) [-1, 1]
    neighbour: np.ndarray   # (S, S) the adjacent slice (above or below, at random)
    mask: np.ndarray        # (S, S) bool, to fill
    labels: Optional[np.ndarray]
    kind: str
    where: tuple[int, int, int, int, int]   # (volume index, slice, neighbour slice, row, column of the centre)


def _crop(a: np.ndarray, k: int, cy: int, cx: int, size: int, fill: float) -> np.ndarray:
    out = np.full((size, size), fill, dtype=a.dtype)
    y0, x0 = cy - size // 2, cx - size // 2
    ys, xs = slice(max(y0, 0), min(y0 + size, a.shape[1])), slice(max(x0, 0), min(x0 + size, a.shape[2]))
    out[ys.start - y0:ys.stop - y0, xs.start - x0:xs.stop - x0] = a[k, ys, xs]
    return out


def _lung_edge(labels_k: np.ndarray, lung_values: Sequence[int]) -> np.ndarray:
    """Pixels of the slice's lungs that touch something else (pleura, mediastinum, a nodule)."""
    lung = np.isin(labels_k, lung_values)
    return lung & ~ndimage.binary_erosion(lung, iterations=2)


def sample(volumes: Sequence[SliceVolume], size: int, rng: np.random.Generator,
           weights: dict[str, float] | None = None, organ_values: Sequence[int] = (),
           lung_values: Sequence[int] = (), avoid_values: Sequence[int] = (), avoid_in_context: bool = False,
           lesion_mm: tuple[float, float] = (5.0, 40.0)) -> SliceSample:
    """One training crop: a random slice (not the first or last) of a random volume, centred inside the body (for
    half the lesion masks, on the edge of a ``lung_values`` structure). A mask covering any ``avoid_values`` voxel is
    drawn again, and with ``avoid_in_context`` so is a crop whose slice or neighbour slice shows one."""
    weights = weights or {"random": 1.0, "lesion": 1.0, "organ": 1.0 if organ_values else 0.0}
    kinds = [k for k in MASK_KINDS if weights.get(k, 0) > 0]
    p = np.array([weights[k] for k in kinds], float)
    if not kinds:
        raise RadSynthError("No mask kind has a positive weight.")
    for _ in range(100):
        vi = int(rng.integers(len(volumes)))
        v = volumes[vi]
        k = int(rng.integers(1, v.image.shape[0] - 1))
        kind = kinds[rng.choice(len(kinds), p=p / p.sum())]
        at_edge = kind == "lesion" and lung_values and v.labels is not None and rng.random() < 0.5
        inside = np.argwhere(_lung_edge(v.labels[k], lung_values) & v.body[k] if at_edge else v.body[k])
        if len(inside) == 0:
            continue
        cy, cx = inside[rng.integers(len(inside))]
        nk = k + (1 if rng.random() < 0.5 else -1)
        image, neighbour = _crop(v.image, k, cy, cx, size, -1.0), _crop(v.image, nk, cy, cx, size, -1.0)
        lab = None if v.labels is None else _crop(v.labels, k, cy, cx, size, 0)
        if kind == "random":
            mask = random_mask(size, rng)
        elif kind == "lesion":
            mask = lesion_mask(size, v.spacing, rng, lesion_mm, center=((size - 1) / 2,) * 2 if at_edge else None)
        else:
            if lab is None:
                continue
            present = [val for val in organ_values if (lab == val).any()]
            if not present:
                continue
            mask = organ_mask(lab, int(rng.choice(present)), v.spacing, rng, boxed=rng.random() < 0.25)
            if mask is None:
                continue
        if avoid_values and lab is not None and np.isin(lab[mask], avoid_values).any():
            continue
        if avoid_in_context and lab is not None and (
                np.isin(lab, avoid_values).any() or np.isin(_crop(v.labels, nk, cy, cx, size, 0), avoid_values).any()):
            continue
        return SliceSample(image, neighbour, mask, lab, kind, (vi, k, nk, int(cy), int(cx)))
    raise RadSynthError("Could not draw a training slice: the volumes have no body voxels (or no organ labels).")


def batch(volumes: Sequence[SliceVolume], n: int, size: int, rng: np.random.Generator, **kw) -> dict[str, np.ndarray]:
    """``n`` samples stacked: image, neighbour, mask (N, 1, S, S) float32; labels (N, S, S) when present."""
    samples = [sample(volumes, size, rng, **kw) for _ in range(n)]
    out = {k: np.stack([getattr(s, k) for s in samples])[:, None].astype(np.float32)
           for k in ("image", "neighbour", "mask")}
    if all(s.labels is not None for s in samples):
        out["labels"] = np.stack([s.labels for s in samples]).astype(np.int64)
    out["kinds"] = np.array([s.kind for s in samples])
    out["where"] = np.array([s.where for s in samples])
    return out
