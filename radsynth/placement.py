"""Where a new tumour can be: inside the patient's body, and inside the organ the user named.

A point, painted region, synthesis mask or moved tumour that lies in the air around the patient, or outside the
named organ, is refused in plain words before any work (a model asked to grow tissue in air paints a blob of
tissue-coloured noise there). The body is :func:`radsynth.anatomy.body_mask`, computed once per image.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from .errors import InvalidMaskError
from .geometry import format_ras, physical_to_continuous_index, physical_to_index
from .volume import Volume

#: a region may stick out of the body or the organ by this fraction (a painted rim, resampling) before refusal
MAX_OUTSIDE = 0.10


class Site:
    """The image a tumour goes into, with its body mask computed on first use."""

    def __init__(self, image: Volume) -> None:
        self.image = image
        self._body: Optional[np.ndarray] = None

    @property
    def body(self) -> np.ndarray:
        if self._body is None:
            from .anatomy import body_mask
            self._body = body_mask(self.image)
        return self._body

    def check_point(self, point_lps: Sequence[float], organ: Optional[np.ndarray] = None,
                    organ_option: str = "--organ") -> None:
        """Refuse a tumour centre outside the image, in the air outside the body, or outside ``organ``."""
        kji = physical_to_index(self.image, point_lps)
        where = f"The point {format_ras(point_lps)}"
        if not self.body[kji]:
            raise InvalidMaskError(f"{where} is in the air outside the patient's body: a tumour grows in tissue. "
                                   "Choose a point inside the body.")
        if organ is not None and not organ[kji]:
            raise InvalidMaskError(f"{where} is outside the organ you named ({organ_option}); choose a point "
                                   "inside it.")

    def check_region(self, region: np.ndarray, what: str, organ: Optional[np.ndarray] = None,
                     organ_option: str = "--organ") -> None:
        """Refuse a region (boolean, image grid) of which more than MAX_OUTSIDE lies outside the body or ``organ``."""
        region = np.asarray(region, dtype=bool)
        count = int(region.sum())
        if count == 0:
            raise InvalidMaskError(f"{what} is empty.")
        outside = 1.0 - int(np.count_nonzero(region & self.body)) / count
        if outside > MAX_OUTSIDE:
            raise InvalidMaskError(f"{what} lies {outside:.0%} in the air outside the patient's body: a tumour grows "
                                   "in tissue. Choose a place inside the body.")
        if organ is not None:
            outside = 1.0 - int(np.count_nonzero(region & organ)) / count
            if outside > MAX_OUTSIDE:
                raise InvalidMaskError(f"{what} lies {outside:.0%} outside the organ you named ({organ_option}); "
                                       "choose a place inside it.")

    def shifted(self, region: np.ndarray, shift_lps: Sequence[float]) -> np.ndarray:
        """``region`` moved by ``shift_lps`` mm, rounded to whole voxels (what a move puts where); voxels that
        would leave the image are refused."""
        origin = physical_to_continuous_index(self.image, self.image.index_to_physical(np.zeros((1, 3)))[0])
        moved_to = physical_to_continuous_index(
            self.image, self.image.index_to_physical(np.zeros((1, 3)))[0] + np.asarray(shift_lps, dtype=float))
        step = np.round(moved_to - origin).astype(int)
        idx = np.argwhere(region) + step
        shape = np.asarray(region.shape)
        if np.any(idx < 0) or np.any(idx >= shape):
            raise InvalidMaskError("The moved tumour would extend beyond the edge of the image; choose a smaller "
                                   "shift or a place further from the edge.")
        out = np.zeros(region.shape, dtype=bool)
        out[tuple(idx.T)] = True
        return out
