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
    def from_sitk(cls, img: sitk.Image, single_slice: bool = False) -> "Volume":
        """``single_slice``: accept one slice (a result of one generated slice); an input must be a volume."""
        if img.GetDimension() != 3:
            raise InvalidImageError(
                f"Expected a 3D image, got a {img.GetDimension()}D image. "
                "Load a single 3D volume (not a single slice or a time series).")
        if img.GetNumberOfComponentsPerPixel() != 1:
            raise InvalidImageError("Expected a scalar image; got a multi-component (colour or vector) image.")
        if min(img.GetSize()) < 2 and not (single_slice and min(img.GetSize()[:2]) >= 2):
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


def _quietly(fn, *args):
    """Call an ITK function without its console warnings (an empty DICOM folder printed two before our message)."""
    shown = sitk.ProcessObject.GetGlobalWarningDisplay()
    sitk.ProcessObject.SetGlobalWarningDisplay(False)
    try:
        return fn(*args)
    finally:
        sitk.ProcessObject.SetGlobalWarningDisplay(shown)


def read_volume(path: PathLike, single_slice: bool = False) -> Volume:
    """Read NRRD / NIfTI / MHA files or a DICOM series folder (the largest series in it). ``single_slice``:
    accept a volume of one slice (results: one generated slice; never a user's input)."""
    path = Path(path)
    if not path.exists():
        raise InvalidImageError(f"File or folder not found: {path}")
    try:
        if path.is_dir():
            reader = sitk.ImageSeriesReader()
            if not any(p.is_file() for p in path.iterdir()):
                raise InvalidImageError(f"The folder {path} is empty: there is no DICOM series in it to read.")
            series = _quietly(reader.GetGDCMSeriesIDs, str(path))
            if not series:
                raise InvalidImageError(f"No DICOM series found in folder {path}: its files are not DICOM images.")
            files = max((_quietly(reader.GetGDCMSeriesFileNames, str(path), s) for s in series), key=len)
            reader.SetFileNames(files)
            img = reader.Execute()
            first = Path(files[0])
        else:
            img = sitk.ReadImage(str(path))
            first = path
    except RuntimeError as exc:
        raise InvalidImageError(f"Could not read {path}: {str(exc).strip().splitlines()[-1]}") from exc
    volume = Volume.from_sitk(img, single_slice)
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
#: No tissue and no air lies below about -1024 HU (noise reaches ~-1100): lower values are the padding scanners put
#: outside the circular field of view (-2000, -2048, -3024 and -32768 are all in use), so they are left out.
PADDING_BELOW = CT_RANGE[0]
#: a CT's field of view holds air (lungs, or around the patient) and soft tissue (fat, muscle, organs)
AIR_BELOW, SOFT_TISSUE = -500.0, (-200.0, 300.0)
MIN_SOFT_TISSUE = 0.01
MAX_HU = 40000.0            # dense metal in extended-range CT stays below
#: more distinct values than this is an image, not a label volume
MAX_LABELS = 1000


def check_finite(volume: Volume, what: str = "The image", error: type = InvalidImageError) -> None:
    """Refuse NaN or infinite voxels: every voxel is used (statistics, the model's crop) or copied into the result."""
    a = volume.array
    if a.dtype.kind not in "fc":
        return
    bad = ~np.isfinite(a)
    count = int(np.count_nonzero(bad))
    if count:
        where = (", all of them" if count == a.size else
                 ", e.g. at voxel (i, j, k) = ({2}, {1}, {0})".format(*np.argwhere(bad)[0]))
        raise error(f"{what} has {count} voxel(s) that are not numbers (NaN or infinite){where}. RadSynth cannot "
                    "compute with them and would copy them into the result; replace them with a value (e.g. "
                    "-1024 HU, air) and try again.")


def check_ct(volume: Volume) -> None:
    """Refuse images whose intensities cannot be Hounsfield units (MRI, normalized, or PET images).

    Judged on the field of view (voxels above PADDING_BELOW), whatever value pads the corners outside it: a CT has
    air below -500 HU and some soft tissue, and nothing above MAX_HU."""
    check_finite(volume)
    a = volume.array
    sample = a[:: max(1, a.shape[0] // 16), ::2, ::2]
    inside = sample[sample > PADDING_BELOW]
    if inside.size < 0.05 * sample.size:
        raise InvalidImageError(
            f"This does not look like a CT in Hounsfield units: {100 - 100 * inside.size / sample.size:.0f} % of "
            f"its voxels are below {PADDING_BELOW:.0f} HU (range {float(a.min()):.0f}..{float(a.max()):.0f}), "
            "where neither tissue nor air can be. Select a CT volume.")
    lo, hi = float(inside.min()), float(inside.max())
    p01, p50 = np.percentile(inside, [1, 50])
    soft = float(np.mean((inside >= SOFT_TISSUE[0]) & (inside <= SOFT_TISSUE[1])))
    if hi > MAX_HU or p01 > AIR_BELOW or hi - lo < 500 or soft < MIN_SOFT_TISSUE:
        raise InvalidImageError(
            f"This does not look like a CT in Hounsfield units (inside the field of view: range {lo:.0f}..{hi:.0f}, "
            f"1st percentile {p01:.0f}, median {p50:.0f}, {100 * soft:.1f} % soft tissue); the models were trained "
            "on CT. Select a CT volume.")


def mask_labels(mask: Volume, what: str = "The mask") -> list[int]:
    """The non-zero label values of a label volume; InvalidMaskError for what is not one (NaN, fractional values
    as in a probability map, negative values or thousands of values as in an image)."""
    a = mask.array
    if a.dtype == bool:
        return [1] if a.any() else []
    check_finite(mask, what, InvalidMaskError)
    if a.dtype.kind == "f" and not np.array_equal(a, np.round(a)):
        raise InvalidMaskError(
            f"{what} holds fractional values ({float(a.min()):g} to {float(a.max()):g}): it looks like a probability "
            "map or an image, not a label volume. Threshold it (e.g. at 0.5) and save it as labels.")
    values = a[a != 0]
    if values.size and values.min() < 0:
        raise InvalidMaskError(
            f"{what} holds negative values (down to {float(values.min()):g}): it looks like an image, not a label "
            "volume (0 = background, 1, 2, … = regions).")
    labels = np.unique(values)
    if labels.size > MAX_LABELS:
        raise InvalidMaskError(f"{what} holds {labels.size} different values: it looks like an image, not a label "
                               "volume (0 = background, 1, 2, … = regions).")
    return [int(v) for v in labels]


def labels_note(labels: list[int], what: str = "The mask") -> str | None:
    """What is done with a label volume holding several labels (None for one label): the CLI and panel say it."""
    if len(labels) <= 1:
        return None
    shown = ", ".join(map(str, labels[:10])) + (", …" if len(labels) > 10 else "")
    return (f"{what} holds {len(labels)} labels ({shown}); RadSynth uses every non-zero voxel, all labels together, "
            "as one region. To use one label only, save it alone.")


def mask_on_grid(mask: Volume, image: Volume) -> Volume:
    """Return ``mask`` as a binary uint8 volume on ``image``'s grid (nearest-neighbour resampling if needed).

    Every non-zero label counts (see :func:`labels_note`); what is not a label volume is refused."""
    if mask.array.ndim != 3:
        raise InvalidMaskError("The mask must be a 3D label volume.")
    mask_labels(mask)
    if not mask.same_grid(image):
        res = sitk.Resample(mask.to_sitk() > 0 if mask.array.dtype != np.uint8 else mask.to_sitk(),
                            image.to_sitk(), sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
        arr = sitk.GetArrayFromImage(res) > 0
    else:
        arr = mask.array != 0
    out = image.label_like(arr)
    if not out.array.any():
        if mask.array.any():
            raise InvalidMaskError("The mask lies outside the image: no mask voxel falls inside the CT volume.")
        raise InvalidMaskError("The mask is empty: draw the region with the Segment Editor first.")
    return out
