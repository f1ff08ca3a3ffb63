"""Crop / paste geometry on an anisotropic, oblique volume whose values are a linear function of LPS position."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from radsynth.errors import InvalidMaskError
from radsynth.region import RegionSpec, blend_weight, check_mask_fits, crop_grid, extract, paste
from radsynth.volume import Volume

torch.set_num_threads(1)

SPACING = (0.7, 0.7, 5.0)            # (i, j, k) mm
SHAPE = (16, 72, 72)                 # (k, j, i)
ORIGIN = (-20.0, 15.0, -30.0)
SPEC = RegionSpec(size=(32, 32, 16), spacing=(1.0, 1.0, 2.0), window=(-1000.0, 1000.0))
MARGIN, FEATHER = 2.0, 3.0


def _rotation(axis, degrees) -> np.ndarray:
    a = np.asarray(axis, float) / np.linalg.norm(axis)
    th = np.deg2rad(degrees)
    k = np.array([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]])
    return np.eye(3) + np.sin(th) * k + (1 - np.cos(th)) * k @ k


DIRECTION = tuple(float(v) for v in _rotation((1.0, 2.0, 3.0), 20.0).ravel())  # ITK row-major


def f(points: np.ndarray) -> np.ndarray:
    """HU as a linear function of LPS position (N, 3)."""
    p = np.asarray(points, float)
    return 2.0 * p[..., 0] - p[..., 1] + 3.0 * p[..., 2]


def _volume() -> Volume:
    proto = Volume(np.zeros(SHAPE, np.int16), ORIGIN, SPACING, DIRECTION)
    kji = np.indices(SHAPE).reshape(3, -1).T
    values = f(proto.index_to_physical(kji)).reshape(SHAPE)
    assert -900 < values.min() and values.max() < 900  # inside the window: nothing is clipped
    return proto.with_array(np.rint(values).astype(np.int16))


def _ellipsoid(center_kji=(8, 36, 34), radii_mm=(5.0, 4.0, 6.0)) -> np.ndarray:
    """(k, j, i) mask; radii are (i, j, k) mm along the image axes."""
    k, j, i = np.indices(SHAPE)
    r2 = (((i - center_kji[2]) * SPACING[0] / radii_mm[0]) ** 2 + ((j - center_kji[1]) * SPACING[1] / radii_mm[1]) ** 2
          + ((k - center_kji[0]) * SPACING[2] / radii_mm[2]) ** 2)
    return r2 <= 1.0


def _grid_points(grid) -> np.ndarray:
    """(k, j, i, 3) physical points of every crop voxel, via ITK."""
    sx, sy, sz = grid.GetSize()
    pts = np.empty((sz, sy, sx, 3))
    for k in range(sz):
        for j in range(sy):
            for i in range(sx):
                pts[k, j, i] = grid.TransformIndexToPhysicalPoint((i, j, k))
    return pts


def _continuous_index_kji(vol: Volume, pts: np.ndarray) -> np.ndarray:
    d = np.asarray(vol.direction).reshape(3, 3)
    ijk = (np.asarray(pts) - np.asarray(vol.origin)) @ d / np.asarray(vol.spacing)
    return ijk[..., ::-1]


def test_extract_samples_the_right_physical_points():
    vol, mask = _volume(), _ellipsoid()
    region = extract(vol, mask, SPEC)
    assert region.image.shape == (16, 32, 32) and region.image.dtype == np.float32
    assert np.allclose(region.grid.GetDirection(), DIRECTION)
    assert np.allclose(region.grid.GetSpacing(), SPEC.spacing)
    pts = _grid_points(region.grid)
    idx = _continuous_index_kji(vol, pts)
    inside = np.all((idx >= 0) & (idx <= np.asarray(SHAPE) - 1), axis=-1)
    assert inside.mean() > 0.5  # the check below covers most of the crop
    hu = SPEC.denormalize(region.image)
    err = np.abs(hu - f(pts))[inside]
    assert err.max() < 2.0, f"crop values off by up to {err.max():.1f} HU"
    # the crop's mask sits where the image mask is (physically)
    vol_centroid = vol.index_to_physical(np.argwhere(mask).mean(0)[None])[0]
    crop_centroid = pts[region.mask > 0].mean(0)
    assert np.linalg.norm(vol_centroid - crop_centroid) < 1.5
    assert set(np.unique(region.mask)) == {0.0, 1.0}


def test_extract_box_leaving_the_image():
    """An explicit centre near the image corner: in-image voxels are still right, the rest get the fill value."""
    vol, mask = _volume(), _ellipsoid()
    center = vol.index_to_physical(np.array([[3.0, 8.0, 62.0]]))[0]
    grid = crop_grid(vol, center, SPEC)
    mid = grid.TransformContinuousIndexToPhysicalPoint([(s - 1) / 2.0 for s in grid.GetSize()])
    assert np.allclose(mid, center, atol=1e-6)
    region = extract(vol, mask, SPEC, center_lps=center)
    pts = _grid_points(region.grid)
    idx = _continuous_index_kji(vol, pts)
    inside = np.all((idx >= 0) & (idx <= np.asarray(SHAPE) - 1), axis=-1)
    far = np.any((idx < -1) | (idx > np.asarray(SHAPE)), axis=-1)
    assert inside.sum() > 1000 and far.sum() > 1000
    assert np.abs(SPEC.denormalize(region.image) - f(pts))[inside].max() < 2.0
    assert np.all(region.image[far] == -1.0)  # fill = window minimum
    fill = extract(vol, mask, SPEC, center_lps=center, fill_hu=0.0)
    assert np.allclose(fill.image[far], SPEC.normalize(np.float32(0.0)))


def _distance_mm(mask: np.ndarray) -> np.ndarray:
    return ndimage.distance_transform_edt(~mask, sampling=np.asarray(SPACING)[::-1])


def test_paste_identity_changes_nothing_far_away():
    vol, mask = _volume(), _ellipsoid()
    before = vol.array.copy()
    region = extract(vol, mask, SPEC)
    out = paste(vol, region, region.image, mask, margin_mm=MARGIN, feather_mm=FEATHER)
    assert np.array_equal(vol.array, before), "paste modified its input"
    assert out.array.dtype == np.int16 and out.shape == vol.shape
    assert out.same_grid(vol)
    # residual paste: a model that returns its input leaves every voxel as it was, near the mask too
    assert np.array_equal(out.array, before)


def test_residual_paste_keeps_native_detail_under_small_changes():
    """Fine native detail (a ±30 HU checkerboard, finer than the model grid) survives a small model change and
    is replaced where the model changes a lot."""
    vol, mask = _volume(), _ellipsoid()
    k, j, i = np.indices(vol.shape)
    vol = vol.with_array((vol.array + 30 * (((i + j) % 2) * 2 - 1)).astype(np.int16))
    region = extract(vol, mask, SPEC)
    assert np.array_equal(paste(vol, region, region.image, mask, margin_mm=MARGIN, feather_mm=FEATHER).array,
                          vol.array)
    # the old paste (the resampled output everywhere) loses the detail even for an identity model
    plain = paste(vol, region, region.image, mask, margin_mm=MARGIN, feather_mm=FEATHER, residual_hu=0)
    assert np.abs(plain.array[mask].astype(int) - vol.array[mask]).max() >= 20
    small = paste(vol, region, region.image + SPEC.normalize(np.float32(20.0)) - SPEC.normalize(np.float32(0.0)),
                  mask, margin_mm=MARGIN, feather_mm=FEATHER)
    diff = small.array.astype(int) - vol.array.astype(int)
    assert np.abs(diff[mask] - 20).max() <= 1            # +20 HU added to the native voxels, detail kept
    big = paste(vol, region, np.full_like(region.image, 0.5), mask, margin_mm=MARGIN, feather_mm=FEATHER)
    assert np.abs(big.array[mask].astype(float) - 500.0).max() <= 1.0   # replaced: no checkerboard left


def test_paste_constant_fills_mask_only():
    vol, mask = _volume(), _ellipsoid()
    before = vol.array.copy()
    region = extract(vol, mask, SPEC)
    generated = np.full_like(region.image, 0.5)
    target_hu = SPEC.denormalize(np.float32(0.5))
    assert target_hu == pytest.approx(500.0)
    out = paste(vol, region, generated, mask, margin_mm=MARGIN, feather_mm=FEATHER)
    assert np.array_equal(vol.array, before)
    assert out.array.dtype == np.int16
    dist = _distance_mm(mask)
    assert np.all(np.abs(out.array[mask].astype(float) - target_hu) <= 1.0)
    assert np.all(np.abs(out.array[(dist > 0) & (dist <= MARGIN)].astype(float) - target_hu) <= 1.0)
    far = dist > MARGIN + FEATHER + 1e-6
    assert np.array_equal(out.array[far], before[far])
    # in the feather the result lies between the original and the generated value
    feather = (dist > MARGIN) & (dist < MARGIN + FEATHER)
    assert feather.any()
    lo = np.minimum(before[feather], target_hu) - 1
    hi = np.maximum(before[feather], target_hu) + 1
    assert np.all((out.array[feather] >= lo) & (out.array[feather] <= hi))
    assert (out.array != before).sum() > mask.sum()


def test_check_mask_fits():
    vol = _volume()
    check_mask_fits(vol, _ellipsoid(), SPEC, MARGIN)  # a small interior mask is fine
    with pytest.raises(InvalidMaskError, match="empty"):
        check_mask_fits(vol, np.zeros(SHAPE, bool), SPEC, MARGIN)
    for sl in [(slice(0, 3), slice(30, 34), slice(30, 34)),      # first slice
               (slice(6, 9), slice(30, 34), slice(68, 72)),      # last column
               (slice(6, 9), slice(0, 4), slice(30, 34))]:       # first row
        border = np.zeros(SHAPE, bool)
        border[sl] = True
        with pytest.raises(InvalidMaskError, match="edge"):
            check_mask_fits(vol, border, SPEC, MARGIN)
    big = np.zeros(SHAPE, bool)
    big[5:10, 10:60, 30:36] = True  # 50 * 0.7 = 35 mm along j > 32 - 2 * 2 mm
    with pytest.raises(InvalidMaskError, match="too large"):
        check_mask_fits(vol, big, SPEC, MARGIN)
    tall = np.zeros(SHAPE, bool)
    tall[2:10, 30:34, 30:34] = True  # 8 slices * 5 mm = 40 mm along k > 32 - 4 mm
    with pytest.raises(InvalidMaskError, match="too large"):
        check_mask_fits(vol, tall, SPEC, MARGIN)


def test_blend_weight():
    shape = (12, 40, 40)
    spacing_kji = np.array([2.0, 0.5, 0.5])
    mask = np.zeros(shape, bool)
    mask[5:7, 18:22, 18:22] = True
    w = blend_weight(mask, spacing_kji, MARGIN, FEATHER)
    assert w.shape == shape and w.dtype == np.float32
    dist = ndimage.distance_transform_edt(~mask, sampling=spacing_kji)
    assert np.all(w[mask] == 1.0)
    assert np.all(w[dist <= MARGIN] == 1.0)
    assert np.all(w[dist >= MARGIN + FEATHER] == 0.0)
    assert (w == 0).any()
    between = (w > 0) & (w < 1)
    assert between.any()
    assert np.all((dist[between] > MARGIN) & (dist[between] < MARGIN + FEATHER))
    # monotone non-increasing walking away from the mask along each axis
    for ray in (w[6, 20, 21:], w[6, 21:, 20], w[6:, 20, 20], w[5::-1, 20, 20]):
        assert np.all(np.diff(ray) <= 1e-7)
        assert ray[-1] == 0.0
    # linear fall-off: 0.5 half-way through the feather along a voxel-aligned ray
    j = 21 + int(round((MARGIN + FEATHER / 2) / 0.5))
    assert w[6, j, 20] == pytest.approx(0.5, abs=1e-6)
    hard = blend_weight(mask, spacing_kji, MARGIN, 0.0)
    assert set(np.unique(hard)) == {0.0, 1.0}
    assert np.array_equal(hard > 0, dist <= MARGIN)
