"""Physical geometry in one place: RAS (Slicer) ⇄ LPS (ITK, the engine), IJK ⇄ RAS matrices, point ⇄ voxel.

A grid is anything with ``origin``, ``spacing``, ``direction`` (9 values, row-major, ITK convention, LPS) and
``shape`` (k, j, i) — a :class:`~radsynth.volume.Volume`. Voxel indices are (k, j, i) like the arrays; ITK and MRML
order them (i, j, k), so the flips happen here and nowhere else.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .errors import InvalidImageError, InvalidMaskError, RadSynthError

LPS_FROM_RAS = np.diag([-1.0, -1.0, 1.0])  # its own inverse: RAS and LPS differ in the sign of the first two axes
RAS_FROM_LPS = LPS_FROM_RAS


# -- RAS ⇄ LPS ------------------------------------------------------------------------------------------------------
def _point(point: Sequence[float], what: str) -> np.ndarray:
    try:
        p = np.asarray(point, dtype=float)
    except (TypeError, ValueError):
        raise RadSynthError(f"The {what} must be three numbers in mm.") from None
    if p.shape != (3,) or not np.all(np.isfinite(p)):
        raise RadSynthError(f"The {what} must be three finite numbers in mm, got {point!r}.")
    return p


def ras_to_lps(point: Sequence[float]) -> tuple[float, float, float]:
    """One point (R, A, S) in mm, as Slicer shows it, in the engine's LPS."""
    r, a, s = _point(point, "point")
    return (-float(r), -float(a), float(s))


def lps_to_ras(point: Sequence[float]) -> tuple[float, float, float]:
    """One point (L, P, S) in mm in Slicer's RAS."""
    return ras_to_lps(point)   # the same flip


def format_ras(point_lps: Sequence[float]) -> str:
    """An LPS point written the way a Slicer user reads it: "R 12.5, A -40.0, S 101.0 mm"."""
    r, a, s = lps_to_ras(point_lps)
    return f"R {r:.1f}, A {a:.1f}, S {s:.1f} mm"


# -- IJK ⇄ RAS (MRML's 4×4 matrix) --------------------------------------------------------------------------------
def ijk_to_ras_matrix(grid) -> np.ndarray:
    """MRML's IJK→RAS 4×4 matrix for a grid given in LPS (origin, spacing, direction)."""
    d = np.asarray(grid.direction, dtype=float).reshape(3, 3)
    m = np.eye(4)
    m[:3, :3] = LPS_FROM_RAS @ d @ np.diag(np.asarray(grid.spacing, dtype=float))
    m[:3, 3] = LPS_FROM_RAS @ np.asarray(grid.origin, dtype=float)
    return m


def grid_from_ijk_to_ras(ijk_to_ras: np.ndarray, ijk0: Sequence[int] = (0, 0, 0)):
    """(origin, spacing, direction) in LPS of the grid whose first voxel has index ``ijk0`` (i, j, k)."""
    ijk_to_ras = np.asarray(ijk_to_ras, dtype=float)
    lps = LPS_FROM_RAS @ ijk_to_ras[:3, :3]
    spacing = np.linalg.norm(lps, axis=0)
    if np.any(spacing <= 0) or not np.all(np.isfinite(lps)):
        raise InvalidImageError("The image has a degenerate geometry (zero voxel spacing).")
    direction = lps / spacing
    origin = LPS_FROM_RAS @ (ijk_to_ras[:3, :3] @ np.asarray(ijk0, dtype=float) + ijk_to_ras[:3, 3])
    return (tuple(float(v) for v in origin), tuple(float(v) for v in spacing),
            tuple(float(v) for v in direction.ravel()))


# -- voxel ⇄ point ------------------------------------------------------------------------------------------------
def index_to_physical(grid, kji) -> np.ndarray:
    """Voxel indices (..., 3) in (k, j, i) order (fractional allowed) → LPS points (..., 3) in mm."""
    ijk = np.asarray(kji, dtype=float)[..., ::-1]
    d = np.asarray(grid.direction, dtype=float).reshape(3, 3)
    return np.asarray(grid.origin, dtype=float) + (ijk * np.asarray(grid.spacing, dtype=float)) @ d.T


def physical_to_continuous_index(grid, points_lps) -> np.ndarray:
    """LPS points (..., 3) → fractional voxel indices (..., 3) in (k, j, i) order; no bounds check.

    Solves with the direction matrix rather than transposing it, so a direction that is only nearly orthonormal
    (rounded in a file header) still maps exactly back and forth with :func:`index_to_physical`.
    """
    d = np.asarray(grid.direction, dtype=float).reshape(3, 3)
    p = np.asarray(points_lps, dtype=float) - np.asarray(grid.origin, dtype=float)
    ijk = np.linalg.solve(d, p.reshape(-1, 3).T).T.reshape(p.shape) / np.asarray(grid.spacing, dtype=float)
    return ijk[..., ::-1]


def inside(grid, kji_continuous) -> np.ndarray:
    """Whether fractional (k, j, i) indices fall in a voxel of the grid (voxel centres ± half a voxel)."""
    c = np.asarray(kji_continuous, dtype=float)
    return np.all((c >= -0.5) & (c < np.asarray(grid.shape, dtype=float) - 0.5), axis=-1)


def _outside_message(point_lps) -> str:
    return (f"The selected point ({format_ras(point_lps)}) is outside the image; click inside the CT volume.")


def physical_to_voxel_position(grid, point_lps) -> np.ndarray:
    """One LPS point → fractional (k, j, i); refuses a point outside the image with a message in RAS."""
    p = _point(point_lps, "point")
    c = physical_to_continuous_index(grid, p)
    if not inside(grid, c):
        raise InvalidMaskError(_outside_message(p))
    return c


def physical_to_index(grid, point_lps) -> tuple[int, int, int]:
    """(k, j, i) of the voxel that contains an LPS point; refuses a point outside the image."""
    c = physical_to_voxel_position(grid, point_lps)
    return tuple(int(v) for v in np.floor(c + 0.5))  # type: ignore[return-value]


def axial_axis(grid) -> int:
    """The array axis (0 = k, 1 = j, 2 = i) that runs most nearly head–foot (S), e.g. 0 for an axial CT."""
    d = np.asarray(grid.direction, dtype=float).reshape(3, 3)   # columns: directions of i, j, k
    return 2 - int(np.argmax(np.abs(d[2, :])))


def rotation(axis: Sequence[float], degrees: float) -> np.ndarray:
    """3 × 3 rotation by ``degrees`` about ``axis`` (Rodrigues): an oblique direction matrix for a grid."""
    axis = np.asarray(axis, float) / np.linalg.norm(axis)
    x, y, z = axis
    c, s = np.cos(np.radians(degrees)), np.sin(np.radians(degrees))
    k = np.array([[0, -z, y], [z, 0, -x], [-y, x, 0]])
    return np.eye(3) * c + s * k + (1 - c) * np.outer(axis, axis)
