"""Training data: cases resampled to the model grid, random crops, and procedural lesion-shaped masks.

Layouts accepted by ``cases_from_folder`` (NIfTI or NRRD):
  pairs   <root>/images/<case>.nii.gz + <root>/labels/<case>.nii.gz   (NSCLC-Radiomics converted from DICOM-SEG/RTSTRUCT)
  kits23  <root>/case_XXXXX/imaging.nii.gz + segmentation.nii.gz       (tumour = label 2)
  brats   <root>/BraTS2021_XXXXX/BraTS2021_XXXXX_{t1ce,seg}.nii.gz        (tumour core = labels 1 and 4; MRI, so
          for the shape generator only: the CT texture models need CT)
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from ..errors import RadSynthError
from ..region import RegionSpec
from ..sample_data import sample_path


@dataclasses.dataclass
class Case:
    name: str
    image: np.ndarray   # (k, j, i) float32 in [-1, 1] on an isotropic model-spacing grid
    tumor: np.ndarray   # bool
    body: np.ndarray    # bool: voxels inside the patient, away from the border
    #: crop-centre candidates by region name: an argwhere over a whole CT takes ~0.3 s, too slow per sample
    centers: dict = dataclasses.field(default_factory=dict, repr=False)


def sample_cases() -> list[tuple[str, Path, Path, tuple[int, ...]]]:
    return [(c, sample_path(c, "image"), sample_path(c, "label"), (1,)) for c in ("lung1", "lung2")]


def cases_from_folder(root: Path | str) -> list[tuple[str, Path, Path, tuple[int, ...]]]:
    root = Path(root)
    brats = sorted(d for d in root.glob("BraTS*") if (d / f"{d.name}_seg.nii.gz").exists())
    if brats:
        return [(d.name, d / f"{d.name}_t1ce.nii.gz", d / f"{d.name}_seg.nii.gz", (1, 4)) for d in brats]
    if (root / "images").is_dir():
        out = []
        for img in sorted((root / "images").iterdir()):
            lbl = root / "labels" / img.name
            if lbl.exists():
                out.append((img.name.split(".")[0], img, lbl, (1,)))
    else:
        out = [(d.name, d / "imaging.nii.gz", d / "segmentation.nii.gz", (2,))
               for d in sorted(root.glob("case_*")) if (d / "imaging.nii.gz").exists()]
    if not out:
        raise RadSynthError(f"No cases found in {root}; see radsynth/train/data.py for the supported layouts.")
    return out


def load_case(name: str, image_path: Path, label_path: Path, tumor_labels: tuple[int, ...],
              spec: RegionSpec) -> Case:
    img = sitk.ReadImage(str(image_path), sitk.sitkFloat32)
    lbl = sitk.ReadImage(str(label_path))
    size = [int(round(sz * sp / spec.spacing[0])) for sz, sp in zip(img.GetSize(), img.GetSpacing())]
    ref = sitk.Image(size, sitk.sitkFloat32)
    ref.SetSpacing(spec.spacing)
    ref.SetOrigin(img.GetOrigin())
    ref.SetDirection(img.GetDirection())
    hu = sitk.GetArrayFromImage(sitk.Resample(img, ref, sitk.Transform(), sitk.sitkLinear, -1024.0))
    tumor = sitk.GetArrayFromImage(sitk.Resample(lbl, ref, sitk.Transform(), sitk.sitkNearestNeighbor, 0))
    body = ndimage.binary_fill_holes(ndimage.binary_opening(hu > -400, iterations=2))
    return Case(name, spec.normalize(hu).astype(np.float32), np.isin(tumor, tumor_labels), body)


def crop(array: np.ndarray, center: np.ndarray, size: int, fill: float) -> np.ndarray:
    lo = np.asarray(center) - size // 2
    out = np.full((size,) * 3, fill, dtype=array.dtype)
    src_lo = np.maximum(lo, 0)
    src_hi = np.minimum(lo + size, array.shape)
    dst_lo = src_lo - lo
    dst_hi = dst_lo + (src_hi - src_lo)
    out[dst_lo[0]:dst_hi[0], dst_lo[1]:dst_hi[1], dst_lo[2]:dst_hi[2]] = \
        array[src_lo[0]:src_hi[0], src_lo[1]:src_hi[1], src_lo[2]:src_hi[2]]
    return out


def lesion_mask(size: int, spacing_mm: float, rng: np.random.Generator,
                diameter_mm: tuple[float, float] = (8.0, 40.0), roughness: float = 0.25) -> np.ndarray:
    """A lesion-like blob: a random ellipsoid whose surface is perturbed by smooth noise, centred in the grid."""
    d = rng.uniform(*diameter_mm)
    axes = d / 2 * rng.uniform(0.6, 1.0, 3) / spacing_mm
    rot = np.linalg.qr(rng.normal(size=(3, 3)))[0]
    grid = np.stack(np.meshgrid(*[np.arange(size) - (size - 1) / 2] * 3, indexing="ij"), -1)
    local = grid @ rot
    r = np.sqrt(((local / axes) ** 2).sum(-1))
    noise = ndimage.gaussian_filter(rng.normal(size=(size,) * 3), sigma=max(axes.min() / 2, 1.0))
    noise /= np.abs(noise).max() + 1e-8
    mask = r < 1.0 + roughness * noise
    labels, n = ndimage.label(mask)
    if n > 1:  # keep one connected lesion
        mask = labels == (np.argmax(np.bincount(labels.ravel())[1:]) + 1)
    return ndimage.binary_fill_holes(mask)


def random_center(case: Case, rng: np.random.Generator, region: np.ndarray | Callable[[], np.ndarray], margin: int,
                  key: str | None = None) -> np.ndarray:
    """A voxel of ``region`` at least ``margin`` from the border (any body voxel if none); ``key`` caches the
    candidates on the case for regions drawn from again and again. ``region`` may be a function, then called only
    when the candidates are not cached yet (a whole-CT threshold per sample is slow)."""
    idx = case.centers.get((key, margin)) if key else None
    if idx is None:
        region = region() if callable(region) else region
        idx = np.argwhere(region[margin:-margin, margin:-margin, margin:-margin]) + margin
        if len(idx) == 0:
            idx = np.argwhere(case.body)
        if key:
            case.centers[(key, margin)] = idx
    return idx[rng.integers(len(idx))]


def lung_region(case: Case) -> np.ndarray:
    return case.body & (case.image < -0.45)  # about -460 HU and below: aerated lung


def hemithorax(case: Case, size: int, split: str) -> np.ndarray:
    """Crop centres whose whole crop lies on one side of the image midline (i axis).

    "train" = the image's high-i half (patient's left in LPS), "eval" = the low-i half: healthy-tissue crops of
    the two never overlap, so removal quality is measured on tissue the texture model never saw.
    """
    mid = case.image.shape[2] // 2
    allowed = np.zeros(case.image.shape, dtype=bool)
    if split == "train":
        allowed[:, :, mid + size // 2:] = True
    else:
        allowed[:, :, : max(mid - size // 2, 0)] = True
    return allowed
