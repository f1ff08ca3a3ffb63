"""Cases as the web reader serves them: axial slices of one fixed size, int16 HU, in radiological orientation.

Every case becomes a stack of ``size × size`` slices (in-plane resampled onto a square field of view when its grid
is not already square), so every slice response of every case has exactly the same byte count: a slice's size on
the wire cannot tell one case from another. Windowing happens in the browser, so window/level changes cost no
request. Loaded cases sit in a small shared LRU cache; the next case of a reader is loaded in the background while
the current one is read, which keeps "Next" fast and its timing independent of how long a file takes to decode.
"""

from __future__ import annotations

import collections
import threading
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import SimpleITK as sitk

from ..reader.errors import StudyError

#: value of the letterbox around a non-square field of view: air, black in every CT window
PAD_HU = -1024
DEFAULT_SIZE = 512


class CaseImage:
    """One case's displayed slices: ``array`` is (n_slices, size, size) int16, row 0 = anterior, column 0 = patient
    right (radiological convention), slice 0 = the most inferior slice of the shown range."""

    def __init__(self, array: np.ndarray, aspect: float) -> None:
        self.array = np.ascontiguousarray(array, dtype="<i2")
        self.aspect = aspect  # displayed height / width of one pixel (1.0 after the square resampling)

    @property
    def n_slices(self) -> int:
        return int(self.array.shape[0])

    @property
    def size(self) -> int:
        return int(self.array.shape[1])

    def slice_bytes(self, k: int) -> bytes:
        if not 0 <= k < self.n_slices:
            raise IndexError(k)
        return self.array[k].tobytes()


def load_case(path: Path, size: int = DEFAULT_SIZE, slice_range: Optional[tuple[int, int]] = None) -> CaseImage:
    try:
        img = sitk.ReadImage(str(path))
    except RuntimeError as exc:
        raise StudyError(f"A case file of the study cannot be read ({exc.__class__.__name__}).") from exc
    if img.GetDimension() != 3 or img.GetNumberOfComponentsPerPixel() != 1:
        raise StudyError("A case file of the study is not a scalar 3D volume.")
    # DICOMOrient("LPS"): i runs to patient left, j to posterior, k to superior, so array[k] is an axial slice
    # in radiological display (patient right on screen left, anterior on top)
    img = sitk.DICOMOrient(img, "LPS")
    if slice_range is not None:
        k0, k1 = slice_range
        if not 0 <= k0 <= k1 < img.GetSize()[2]:
            raise StudyError(f"The study's slice range {k0}:{k1} does not fit a case with {img.GetSize()[2]} slices.")
        img = img[:, :, k0:k1 + 1]
    img = _square(img, size)
    array = sitk.GetArrayFromImage(img)
    if array.dtype != np.int16:
        array = np.clip(np.rint(array), -32768, 32767).astype(np.int16)
    return CaseImage(array, 1.0)


def _square(img: sitk.Image, size: int) -> sitk.Image:
    """Resample in plane onto ``size × size`` square pixels covering the whole slice, centred, letterboxed with air."""
    ni, nj, nk = img.GetSize()
    si, sj, sk = img.GetSpacing()
    if ni == size and nj == size and abs(si - sj) <= 1e-6 * max(si, sj):
        return img
    fov = max(ni * si, nj * sj)
    step = fov / size
    direction = np.asarray(img.GetDirection(), dtype=float).reshape(3, 3)
    centre = np.asarray(img.GetOrigin()) + direction @ np.array([(ni - 1) / 2 * si, (nj - 1) / 2 * sj, 0.0])
    origin = centre - direction @ np.array([(size - 1) / 2 * step, (size - 1) / 2 * step, 0.0])
    return sitk.Resample(img, (size, size, nk), sitk.Transform(), sitk.sitkLinear, tuple(origin), (step, step, sk),
                         img.GetDirection(), PAD_HU, sitk.sitkInt16)


class CaseCache:
    """Thread-safe LRU of loaded cases, keyed by case id; one load per case even when readers ask at once."""

    def __init__(self, loader: Callable[[str], CaseImage], capacity: int = 12) -> None:
        if capacity < 2:
            raise ValueError("the case cache must hold at least the current and the next case")
        self._loader = loader
        self._capacity = capacity
        self._items: "collections.OrderedDict[str, CaseImage]" = collections.OrderedDict()
        self._loading: dict[str, _Pending] = {}
        self._lock = threading.Lock()

    def get(self, case_id: str) -> CaseImage:
        with self._lock:
            if case_id in self._items:
                self._items.move_to_end(case_id)
                return self._items[case_id]
            pending = self._loading.get(case_id)
            owner = pending is None
            if owner:
                pending = self._loading[case_id] = _Pending()
        if not owner:
            pending.done.wait()
            if pending.error is not None:
                raise pending.error
            return pending.image  # type: ignore[return-value]
        try:
            pending.image = self._loader(case_id)
        except BaseException as exc:
            pending.error = exc
            raise
        else:
            with self._lock:
                self._items[case_id] = pending.image
                while len(self._items) > self._capacity:
                    self._items.popitem(last=False)
            return pending.image
        finally:
            with self._lock:
                del self._loading[case_id]
            pending.done.set()

    @property
    def capacity(self) -> int:
        return self._capacity

    def prefetch(self, case_id: str) -> None:
        """Load in a background thread; errors surface when the case is actually asked for."""
        with self._lock:
            if case_id in self._items or case_id in self._loading:
                return

        def load() -> None:
            try:
                self.get(case_id)
            except BaseException:  # noqa: BLE001 - reported to whoever asks for the case
                pass

        threading.Thread(target=load, name="prefetch-case", daemon=True).start()

    def __contains__(self, case_id: str) -> bool:
        with self._lock:
            return case_id in self._items


class _Pending:
    """A load in progress: waiters block on ``done`` and then take its image or its error."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.image: Optional[CaseImage] = None
        self.error: Optional[BaseException] = None
