"""Training shapes for the shape GAN, all mapped into the normalized frame of ``radsynth.pipelines.shape``.

Two sources:
  * procedural lesion-like shapes (``lesion_mask`` blobs, elongated/flat ellipsoids, lobulated unions of balls),
    with surface noise of varied amplitude and scale so that sphericity spans ~0.5–0.95;
  * real tumour labels (the lung1/lung2 samples, or every case of a ``cases_from_folder`` root), each connected
    lesion augmented by random rotations.
A mask is moved into the frame through its signed distance map, interpolated linearly: this is shape-based
interpolation, so 5 mm CT slices give a smooth tumour instead of a staircase, and the result is a soft mask with a
one-voxel partial-volume rim like the generator's sigmoid output.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from ..pipelines.shape import FRAME_FILL, conditioning_features
from ..shape_features import fast_shape_features
from .data import lesion_mask

MIN_LESION_ML = 0.05   # smaller label fragments are annotation specks, not tumours


def _rotation(rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    return q * np.sign(np.diag(r))  # uniform over orthogonal matrices (reflections included: shapes are unsigned)


def to_frame(mask: np.ndarray, spacing_kji, rng: np.random.Generator | None, grid: int = 32) -> np.ndarray:
    """A binary mask on any (anisotropic) grid → uint8 soft mask (0..255) on the normalized frame."""
    spacing = np.asarray(spacing_kji, dtype=np.float64)
    idx = np.argwhere(mask)
    lo, hi = idx.min(0), idx.max(0) + 1
    sub = np.pad(mask[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]], 2)
    sdt = (ndimage.distance_transform_edt(~sub, sampling=spacing)
           - ndimage.distance_transform_edt(sub, sampling=spacing))
    pts = np.argwhere(sub) * spacing
    centre = pts.mean(0)
    radius = np.sqrt(((pts - centre) ** 2).sum(1)).max() + 0.5 * spacing.mean()
    h = radius / (FRAME_FILL * grid / 2)
    rot = _rotation(rng) if rng is not None else np.eye(3)
    u = np.stack(np.meshgrid(*[np.arange(grid) - (grid - 1) / 2] * 3, indexing="ij"), -1).reshape(-1, 3)
    src = ((u @ rot.T) * h + centre) / spacing
    d = ndimage.map_coordinates(sdt, src.T, order=1, mode="nearest").reshape((grid,) * 3)
    return np.round(np.clip(0.5 - d / h, 0.0, 1.0) * 255).astype(np.uint8)


def frame_features(soft: np.ndarray) -> dict[str, float] | None:
    """Conditioning features of a frame mask as the generator path measures it (threshold, largest component)."""
    mask = soft >= 128 if soft.dtype == np.uint8 else soft >= 0.5
    labels, n = ndimage.label(mask)
    if n == 0:
        return None
    if n > 1:
        mask = labels == (np.argmax(np.bincount(labels.ravel())[1:]) + 1)
    mask = ndimage.binary_fill_holes(mask)
    if mask.sum() < 8:
        return None
    feats = conditioning_features(fast_shape_features(mask, (1.0, 1.0, 1.0)))
    feats.pop("volume_ml")
    return feats


def procedural_shape(rng: np.random.Generator, size: int = 48) -> np.ndarray:
    """One lesion-like binary mask at 1 mm, of a randomly chosen family."""
    kind = rng.choice(["lesion", "ellipsoid", "lobulated"], p=[0.3, 0.4, 0.3])
    if kind == "lesion":
        return lesion_mask(size, 1.0, rng, diameter_mm=(16.0, 34.0), roughness=rng.uniform(0.0, 0.6))
    x = np.stack(np.meshgrid(*[np.arange(size) - (size - 1) / 2] * 3, indexing="ij"), -1)
    if kind == "ellipsoid":
        a = rng.uniform(9.0, 15.0)
        b = a * rng.uniform(0.25, 1.0)
        axes = np.array([a, b, b * rng.uniform(0.3, 1.0)])
        r = np.sqrt(((x @ _rotation(rng) / axes) ** 2).sum(-1))
    else:
        k = int(rng.integers(2, 7))
        radii = rng.uniform(4.0, 9.0, k)
        centres = rng.normal(size=(k, 3)) * rng.uniform(2.0, 6.0)
        r = np.min([np.sqrt(((x - c) ** 2).sum(-1)) / rr for c, rr in zip(centres, radii)], axis=0)
    noise = ndimage.gaussian_filter(rng.normal(size=(size,) * 3), sigma=rng.uniform(1.0, 4.0))
    noise /= 3 * noise.std() + 1e-8   # ±1 at 3 SD: the amplitude, not the grid's extreme, sets the roughness
    mask = r < 1.0 + 0.8 * rng.uniform(0.0, 1.0) ** 1.5 * noise
    labels, n = ndimage.label(mask)
    if n > 1:
        mask = labels == (np.argmax(np.bincount(labels.ravel())[1:]) + 1)
    return ndimage.binary_fill_holes(mask)


def real_lesions(cases: list[tuple[str, Path, Path, int]]) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(name, bool mask, spacing kji) per connected tumour of at least MIN_LESION_ML in the label files."""
    out = []
    for name, _image, label_path, tumor_labels in cases:
        lbl = sitk.ReadImage(str(label_path))
        spacing = np.array(lbl.GetSpacing()[::-1], dtype=np.float64)
        tumour = np.isin(sitk.GetArrayFromImage(lbl), tumor_labels)
        labels, n = ndimage.label(tumour)
        sizes = np.bincount(labels.ravel())[1:]
        for i, box in enumerate(ndimage.find_objects(labels)):  # rotations only need the lesion's neighbourhood
            if sizes[i] * np.prod(spacing) / 1000.0 >= MIN_LESION_ML:
                out.append((f"{name}#{i + 1}", labels[box] == i + 1, spacing))
    return out


def build_dataset(lesions: list[tuple[str, np.ndarray, np.ndarray]], n_procedural: int, n_real: int,
                  rng: np.random.Generator, grid: int = 32, log: Callable[[str], None] = print):
    """(soft uint8 (N, G, G, G), feature rows, source tags); real lesions share n_real augmented copies."""
    softs, rows, tags = [], [], []

    def add(soft: np.ndarray, tag: str) -> None:
        feats = frame_features(soft)
        if feats is not None:
            softs.append(soft)
            rows.append(feats)
            tags.append(tag)

    for lesion_name, mask, spacing in lesions:
        for _ in range(max(2, n_real // max(len(lesions), 1))):
            add(to_frame(mask, spacing, rng, grid), f"real:{lesion_name}")
    log(f"shape data: {len(softs)} real frames from {len(lesions)} lesion(s)")
    for i in range(n_procedural):
        add(to_frame(procedural_shape(rng), (1.0, 1.0, 1.0), rng, grid), "procedural")
        if (i + 1) % 500 == 0:
            log(f"shape data: {i + 1}/{n_procedural} procedural shapes")
    return np.stack(softs), rows, tags
