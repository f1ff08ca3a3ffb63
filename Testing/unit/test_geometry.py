"""radsynth.geometry: RAS⇄LPS, IJK→RAS matrices, point⇄voxel on anisotropic, oblique grids (checked with ITK)."""

from __future__ import annotations


import numpy as np
import pytest

from radsynth import geometry
from radsynth.errors import InvalidImageError, InvalidMaskError, RadSynthError
from radsynth.geometry import rotation  # noqa: E402
from radsynth.volume import Volume


@pytest.fixture
def grid() -> Volume:
    """0.7 × 0.8 × 5 mm voxels, tilted 20° about an oblique axis, origin off every axis."""
    return Volume(np.zeros((6, 9, 11), np.int16), (12.5, -40.25, 101.0), (0.7, 0.8, 5.0),
                  tuple(rotation((1, 2, 0.5), 20).ravel()))


def test_ras_lps_flip_first_two_axes():
    assert geometry.ras_to_lps((12.5, -40.0, 101.0)) == (-12.5, 40.0, 101.0)
    assert geometry.lps_to_ras(geometry.ras_to_lps((1.0, 2.0, 3.0))) == (1.0, 2.0, 3.0)
    np.testing.assert_array_equal(geometry.LPS_FROM_RAS @ [1.0, 2.0, 3.0], [-1.0, -2.0, 3.0])
    assert isinstance(geometry.ras_to_lps(np.array([1, 2, 3]))[0], float)   # JSON-serializable, not numpy


@pytest.mark.parametrize("bad", [(1.0, 2.0), (1.0, float("nan"), 0.0), ("a", "b", "c"), None])
def test_bad_points_are_refused(bad):
    with pytest.raises(RadSynthError, match="three"):
        geometry.ras_to_lps(bad)


def test_index_to_physical_matches_itk(grid):
    img = grid.to_sitk()
    kji = np.array([[0, 0, 0], [5, 8, 10], [2, 3, 7], [1.5, 0.25, 9.75]])
    expected = [img.TransformContinuousIndexToPhysicalPoint(tuple(float(v) for v in p[::-1])) for p in kji]
    np.testing.assert_allclose(geometry.index_to_physical(grid, kji), expected, atol=1e-9)
    np.testing.assert_allclose(grid.index_to_physical(kji), expected, atol=1e-9)   # Volume delegates here


def test_point_to_voxel_round_trip_and_itk(grid):
    img = grid.to_sitk()
    rng = np.random.default_rng(0)
    kji = rng.uniform(-0.49, np.asarray(grid.shape) - 0.51, size=(50, 3))
    points = geometry.index_to_physical(grid, kji)
    np.testing.assert_allclose(geometry.physical_to_continuous_index(grid, points), kji, atol=1e-9)
    for p, c in zip(points, kji):
        voxel = geometry.physical_to_index(grid, p)
        assert voxel == tuple(int(v) for v in np.floor(c + 0.5))
        assert voxel == img.TransformPhysicalPointToIndex(tuple(p))[::-1]


def test_point_outside_is_refused_with_ras_coordinates(grid):
    corner = geometry.index_to_physical(grid, [[-0.6, 0, 0]])[0]    # just beyond the first slice's outer face
    with pytest.raises(InvalidMaskError, match=r"outside the image.*") as info:
        geometry.physical_to_index(grid, corner)
    r, a, s = geometry.lps_to_ras(corner)
    assert f"R {r:.1f}, A {a:.1f}, S {s:.1f} mm" in str(info.value)
    last = geometry.index_to_physical(grid, [[5.49, 8.49, 10.49]])[0]     # still in the last voxel
    assert geometry.physical_to_index(grid, last) == (5, 8, 10)
    with pytest.raises(InvalidMaskError):
        geometry.physical_to_index(grid, geometry.index_to_physical(grid, [[5.5, 0, 0]])[0])


def test_ijk_to_ras_matrix_and_back(grid):
    m = geometry.ijk_to_ras_matrix(grid)
    kji = np.array([[0, 0, 0], [5, 8, 10], [2, 3, 7]])
    ras = (m @ np.c_[kji[:, ::-1], np.ones(len(kji))].T).T[:, :3]
    np.testing.assert_allclose(ras, geometry.index_to_physical(grid, kji) * [-1, -1, 1], atol=1e-9)
    origin, spacing, direction = geometry.grid_from_ijk_to_ras(m)
    np.testing.assert_allclose(origin, grid.origin, atol=1e-9)
    np.testing.assert_allclose(spacing, grid.spacing, atol=1e-12)
    np.testing.assert_allclose(direction, grid.direction, atol=1e-12)
    # a sub-grid starting at voxel (i, j, k) = (2, 3, 1) starts at that voxel's centre
    sub_origin, _, _ = geometry.grid_from_ijk_to_ras(m, (2, 3, 1))
    np.testing.assert_allclose(sub_origin, geometry.index_to_physical(grid, [[1, 3, 2]])[0], atol=1e-9)
    with pytest.raises(InvalidImageError, match="degenerate"):
        geometry.grid_from_ijk_to_ras(np.diag([1.0, 0.0, 1.0, 1.0]))


def test_axial_axis_follows_the_direction():
    axial = Volume(np.zeros((4, 5, 6)), (0, 0, 0), (1, 1, 1), tuple(np.eye(3).ravel()))
    assert geometry.axial_axis(axial) == 0
    # sagittal slices: i runs to P, j to the feet, k to L; head-foot is the j axis
    sagittal = np.array([[0, 0, 1], [1, 0, 0], [0, -1, 0]], float)
    assert geometry.axial_axis(Volume(np.zeros((4, 5, 6)), (0, 0, 0), (1, 1, 1), tuple(sagittal.ravel()))) == 1
    tilted = Volume(np.zeros((4, 5, 6)), (0, 0, 0), (1, 1, 1), tuple(rotation((1, 0, 0), 30).ravel()))
    assert geometry.axial_axis(tilted) == 0
