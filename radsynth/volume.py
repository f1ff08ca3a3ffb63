"""Volume = voxel array + physical geometry, read and written with SimpleITK.

Arrays are indexed (k, j, i) like SimpleITK's GetArrayFromImage; geometry is LPS like ITK. The conversion to
Slicer's RAS lives only in ``radsynth.mrml``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Union

import numpy as np
import SimpleITK as sitk

from . import geometry, provenance
from .errors import InvalidImageError, InvalidMaskError
# the keys and the name rule live with the rest of provenance; re-exported because every module imports them here
from .provenance import PROVENANCE_KEY, SYNTHETIC_KEY, SYNTHETIC_SUFFIX, synthetic_name  # noqa: F401


@dataclasses.dataclass
class Volume:
    array: np.ndarray                 # (k, j, i)
    origin: tuple[float, float, float]
    spacing: tuple[float, float, float]
    direction: tuple[float, ...]      # 9 values, row-major, ITK convention
    metadata: dict[str, str] = dataclasses.field(default_factory=dict)

    # -- geometry -------------------------------------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.array.shape)  # type: ignore[return-value]

    def same_grid(self, other: "Volume", tol: float = 1e-4) -> bool:
        return (self.array.shape == other.array.shape
                and np.allclose(self.origin, other.origin, atol=tol)
                and np.allclose(self.spacing, other.spacing, atol=tol)
                and np.allclose(self.direction, other.direction, atol=tol))

    def with_array(self, array: np.ndarray) -> "Volume":
        return Volume(array, self.origin, self.spacing, self.direction, dict(self.metadata))

    def label_like(self, array: np.ndarray, dtype=np.uint8) -> "Volume":
        """A label volume (``dtype``, bool → 0/1) on this grid, without this image's metadata: a mask drawn on a
        synthetic CT is not itself synthetic, and must not inherit the CT's provenance."""
        array = np.asarray(array)
        if array.shape != self.shape:
            raise InvalidMaskError(f"The label array has shape {array.shape}; the image has {self.shape}.")
        if array.dtype != bool and array.size:
            info = np.iinfo(dtype)
            lo, hi = array.min(), array.max()
            if lo < info.min or hi > info.max or (array.dtype.kind == "f" and not np.all(np.mod(array, 1) == 0)):
                raise InvalidMaskError(f"Label values {lo}..{hi} do not fit a {np.dtype(dtype).name} label volume.")
        return Volume(array.astype(dtype), self.origin, self.spacing, self.direction, {})

    def index_to_physical(self, kji: np.ndarray) -> np.ndarray:
        """(N, 3) voxel indices in (k, j, i) order → (N, 3) LPS points."""
        return geometry.index_to_physical(self, kji)

    # -- SimpleITK ------------------------------------------------------------------------------------------------
    def to_sitk(self) -> sitk.Image:
        img = sitk.GetImageFromArray(self.array)
        img.SetOrigin(tuple(float(v) for v in self.origin))
        img.SetSpacing(tuple(float(v) for v in self.spacing))
        img.SetDirection(tuple(float(v) for v in self.direction))
        for k, v in self.metadata.items():
            img.SetMetaData(k, str(v))
        return img

    @classmethod
    def from_sitk(cls, img: sitk.Image) -> "Volume":
        if img.GetDimension() != 3:
            raise InvalidImageError(
                f"Expected a 3D image, got a {img.GetDimension()}D image. "
                "Load a single 3D volume (not a single slice or a time series).")
        if img.GetNumberOfComponentsPerPixel() != 1:
            raise InvalidImageError("Expected a scalar image; got a multi-component (colour or vector) image.")
        if min(img.GetSize()) < 2:
            raise InvalidImageError(f"The image is a single slice (size {img.GetSize()}); a 3D volume is needed.")
        meta = {k: img.GetMetaData(k) for k in img.GetMetaDataKeys() if k.startswith("RadSynth")}
        return cls(sitk.GetArrayFromImage(img), img.GetOrigin(), img.GetSpacing(), img.GetDirection(), meta)

    # -- provenance -----------------------------------------------------------------------------------------------
    @property
    def is_synthetic(self) -> bool:
        return provenance.is_synthetic(self.metadata)

    def mark_synthetic(self, provenance: str) -> "Volume":
        self.metadata[SYNTHETIC_KEY] = "1"
        prior = self.metadata.get(PROVENANCE_KEY)
        self.metadata[PROVENANCE_KEY] = f"{prior}; {provenance}" if prior else provenance
        return self


PathLike = Union[str, Path]


def read_volume(path: PathLike) -> Volume:
    """Read NRRD / NIfTI / MHA files or a DICOM series folder (the largest series in it)."""
    path = Path(path)
    if not path.exists():
        raise InvalidImageError(f"File or folder not found: {path}")
    try:
        if path.is_dir():
            reader = sitk.ImageSeriesReader()
            series = reader.GetGDCMSeriesIDs(str(path))
            if not series:
                raise InvalidImageError(f"No DICOM series found in folder {path}")
            files = max((reader.GetGDCMSeriesFileNames(str(path), s) for s in series), key=len)
            reader.SetFileNames(files)
            img = reader.Execute()
            first = Path(files[0])
        else:
            img = sitk.ReadImage(str(path))
            first = path
    except RuntimeError as exc:
        raise InvalidImageError(f"Could not read {path}: {str(exc).strip().splitlines()[-1]}") from exc
    volume = Volume.from_sitk(img)
    # formats without free header keys carry the mark in a sidecar, a NIfTI descrip or DICOM Synthetic Data
    volume.metadata.update(provenance.read_file_mark(first))
    return volume


def write_volume(volume: Volume, path: PathLike) -> None:
    """Write with compression. Provenance keys become NRRD header fields (``key:=value``); NIfTI and other
    formats get a ``.radsynth.json`` sidecar (NIfTI also a ``descrip``); an unmarked volume removes a stale one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".partial" + "".join(path.suffixes))
    img = volume.to_sitk()
    nifti = path.name.lower().endswith((".nii", ".nii.gz"))
    if nifti:
        img.SetMetaData("ITK_FileNotes", provenance.nifti_descrip(volume.metadata))   # ITK writes it as descrip
    sitk.WriteImage(img, str(tmp), useCompression=True)
    if not path.name.lower().endswith((".nrrd", ".nhdr")):
        provenance.write_sidecar(path, volume.metadata)
    tmp.replace(path)  # never leave a half-written result behind


# -- validation ---------------------------------------------------------------------------------------------------
CT_RANGE = (-1200.0, 4000.0)


def check_ct(volume: Volume) -> None:
    """Refuse images whose intensities cannot be Hounsfield units (MRI, normalized, or PET images)."""
    a = volume.array
    lo, hi = float(a.min()), float(a.max())
    p01, p50 = np.percentile(a[:: max(1, a.shape[0] // 8)], [1, 50])
    if lo < CT_RANGE[0] - 1000 or hi > 40000 or p01 > -500 or hi - lo < 500:
        raise InvalidImageError(
            f"This does not look like a CT in Hounsfield units (range {lo:.0f}..{hi:.0f}, 1st percentile "
            f"{p01:.0f}, median {p50:.0f}); the models were trained on CT. Select a CT volume.")


def mask_on_grid(mask: Volume, image: Volume) -> Volume:
    """Return ``mask`` as a binary uint8 volume on ``image``'s grid (nearest-neighbour resampling if needed)."""
    if mask.array.ndim != 3:
        raise InvalidMaskError("The mask must be a 3D label volume.")
    if not mask.same_grid(image):
        res = sitk.Resample(mask.to_sitk() > 0 if mask.array.dtype != np.uint8 else mask.to_sitk(),
                            image.to_sitk(), sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
        arr = sitk.GetArrayFromImage(res) > 0
    else:
        arr = mask.array > 0
    out = image.label_like(arr)
    if not out.array.any():
        if mask.array.any():
            raise InvalidMaskError("The mask lies outside the image: no mask voxel falls inside the CT volume.")
        raise InvalidMaskError("The mask is empty: draw the region with the Segment Editor first.")
    return out
