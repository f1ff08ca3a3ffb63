"""Crop a fixed physical box around a mask, resample it to the model grid, normalize; paste results back.

The box keeps the image's direction (an oblique scan gives an oblique box), so no voxel is rotated twice. Only
the image sub-block under the box is converted, so a very large volume is never copied whole. Paste-back writes
only where the blend weight is positive: every other voxel stays bit-identical to the input.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from .geometry import physical_to_continuous_index
from .errors import InvalidMaskError
from .volume import Volume


@dataclasses.dataclass(frozen=True)
class RegionSpec:
    """What a model expects; read from its card."""
    size: tuple[int, int, int]          # voxels (i, j, k) at model spacing
    spacing: tuple[float, float, float]  # mm (i, j, k)
    window: tuple[float, float]          # HU mapped to [-1, 1]

    @property
    def extent_mm(self) -> np.ndarray:
        return np.asarray(self.size) * np.asarray(self.spacing)

    def normalize(self, hu: np.ndarray) -> np.ndarray:
        lo, hi = self.window
        return (np.clip(hu, lo, hi) - lo) / (hi - lo) * 2.0 - 1.0

    def denormalize(self, x: np.ndarray) -> np.ndarray:
        lo, hi = self.window
        return (np.clip(x, -1.0, 1.0) + 1.0) / 2.0 * (hi - lo) + lo


@dataclasses.dataclass
class Region:
    """A model-grid crop: ``image`` in [-1, 1] and ``mask`` in {0, 1}, both (k, j, i) float32."""
    image: np.ndarray
    mask: np.ndarray
    grid: sitk.Image       # empty image carrying the crop geometry
    spec: RegionSpec


def _sub_block(volume: Volume, lo_kji: np.ndarray, hi_kji: np.ndarray) -> sitk.Image:
    """The image block [lo, hi) (clamped) as a SimpleITK image with correct geometry."""
    lo = np.clip(lo_kji, 0, volume.shape)
    hi = np.clip(hi_kji, 0, volume.shape)
    block = volume.array[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]]
    img = sitk.GetImageFromArray(np.ascontiguousarray(block))
    img.SetSpacing(volume.spacing)
    img.SetDirection(volume.direction)
    img.SetOrigin(tuple(volume.index_to_physical(lo[None])[0]))
    return img


def _box_index_bounds(volume: Volume, grid: sitk.Image) -> tuple[np.ndarray, np.ndarray]:
    """Index bounds (k, j, i) of the image voxels that the crop grid touches (+1 voxel for interpolation)."""
    size = np.asarray(grid.GetSize())
    corners = np.array([[a, b, c] for a in (0, size[0] - 1) for b in (0, size[1] - 1) for c in (0, size[2] - 1)])
    phys = np.array([grid.TransformIndexToPhysicalPoint(tuple(int(v) for v in c)) for c in corners])
    kji = physical_to_continuous_index(volume, phys)
    return np.floor(kji.min(0)).astype(int) - 1, np.ceil(kji.max(0)).astype(int) + 2


def crop_grid(volume: Volume, center_lps: np.ndarray, spec: RegionSpec) -> sitk.Image:
    grid = sitk.Image([int(s) for s in spec.size], sitk.sitkUInt8)
    grid.SetSpacing(tuple(float(s) for s in spec.spacing))
    grid.SetDirection(volume.direction)
    d = np.asarray(volume.direction).reshape(3, 3)
    half = (np.asarray(spec.size) - 1) / 2.0 * np.asarray(spec.spacing)
    grid.SetOrigin(tuple(np.asarray(center_lps) - d @ half))
    return grid


def mask_center_and_extent(volume: Volume, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Physical centre of the mask's bounding box and its extent in mm along the image axes (i, j, k)."""
    idx = np.argwhere(mask)
    lo, hi = idx.min(0), idx.max(0)
    center = volume.index_to_physical(((lo + hi) / 2.0)[None])[0]
    extent = ((hi - lo + 1) * np.asarray(volume.spacing)[::-1])[::-1]
    return center, extent


def check_mask_fits(volume: Volume, mask: np.ndarray, spec: RegionSpec, margin_mm: float) -> None:
    if not mask.any():
        raise InvalidMaskError("The mask is empty: draw the region with the Segment Editor first.")
    idx = np.argwhere(mask)
    lo, hi = idx.min(0), idx.max(0)
    if (lo == 0).any() or (hi == np.asarray(mask.shape) - 1).any():
        raise InvalidMaskError("The mask touches the edge of the image. The model needs surrounding tissue: "
                               "draw the region away from the image border.")
    _, extent = mask_center_and_extent(volume, mask)
    room = spec.extent_mm - 2 * margin_mm
    if (extent > room).any():
        raise InvalidMaskError(
            f"The region is too large for this model: {extent.round(0).tolist()} mm, the model handles up to "
            f"{room.round(0).tolist()} mm (including a {margin_mm:g} mm blending margin).")


def extract(volume: Volume, mask: np.ndarray, spec: RegionSpec, center_lps: np.ndarray | None = None,
            fill_hu: float | None = None) -> Region:
    """Resample the box around ``mask`` (a (k, j, i) array on ``volume``'s grid) to the model grid."""
    if center_lps is None:
        center_lps, _ = mask_center_and_extent(volume, mask)
    grid = crop_grid(volume, center_lps, spec)
    lo, hi = _box_index_bounds(volume, grid)
    img_block = _sub_block(volume, lo, hi)
    img_block = sitk.Cast(img_block, sitk.sitkFloat32)
    fill = float(fill_hu if fill_hu is not None else spec.window[0])
    img = sitk.Resample(img_block, grid, sitk.Transform(), sitk.sitkLinear, fill, sitk.sitkFloat32)
    msk_block = _sub_block(volume.with_array(mask.astype(np.float32)), lo, hi)
    msk = sitk.Resample(msk_block, grid, sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkFloat32)
    image = spec.normalize(sitk.GetArrayFromImage(img)).astype(np.float32)
    mask_arr = (sitk.GetArrayFromImage(msk) >= 0.5).astype(np.float32)
    if not mask_arr.any():  # a very thin mask can vanish at model spacing; keep its nearest voxels
        mask_arr = (sitk.GetArrayFromImage(msk) > 0).astype(np.float32)
    return Region(image, mask_arr, grid, spec)


#: model changes up to this (HU, at model resolution) are added to the native voxels; twice it replaces them
RESIDUAL_HU = 100.0


def blend_weight(mask: np.ndarray, spacing_kji: np.ndarray, margin_mm: float, feather_mm: float) -> np.ndarray:
    """1 inside the mask dilated by ``margin_mm``, falling linearly to 0 over ``feather_mm`` beyond it."""
    dist = ndimage.distance_transform_edt(~mask.astype(bool), sampling=spacing_kji)
    if feather_mm <= 0:
        return (dist <= margin_mm).astype(np.float32)
    return np.clip(1.0 - (dist - margin_mm) / feather_mm, 0.0, 1.0).astype(np.float32)


def paste(volume: Volume, region: Region, generated: np.ndarray, mask: np.ndarray,
          margin_mm: float = 2.0, feather_mm: float = 3.0, residual_hu: float = RESIDUAL_HU) -> Volume:
    """Return a copy of ``volume`` with the model's output ``generated`` (model grid, [-1, 1]) blended in around
    ``mask`` (image grid); only voxels within margin + feather of it can change.

    Residual paste: what is pasted is the model's *change* (``generated`` − the model-grid input), resampled to the
    image grid and added to the native voxels, wherever that change is small (up to ``residual_hu``); where it is
    large (twice that and more, e.g. a tumour removed) the resampled output replaces the voxel, so no trace of the
    old content's fine detail survives; in between the two mix linearly. Native detail (vessels crossing the margin, the chest wall edge) is kept where
    the model changed little, and a model that returns its input leaves every voxel as it was.
    ``residual_hu`` 0 pastes the resampled output everywhere (the old behaviour).
    """
    reach = margin_mm + feather_mm
    idx = np.argwhere(mask)
    pad = np.ceil(reach / np.asarray(volume.spacing)[::-1]).astype(int) + 1
    lo = np.maximum(idx.min(0) - pad, 0)
    hi = np.minimum(idx.max(0) + pad + 1, volume.shape)
    sl = tuple(slice(a, b) for a, b in zip(lo, hi))
    weight = blend_weight(mask[sl], np.asarray(volume.spacing)[::-1], margin_mm, feather_mm)

    block = _sub_block(volume, lo, hi)
    gen_hu = region.spec.denormalize(generated).astype(np.float32)
    change_hu = gen_hu - region.spec.denormalize(region.image).astype(np.float32)
    gen_on_image, change_on_image = (_to_block(a, region.grid, block) for a in (gen_hu, change_hu))
    # Outside the model box both are NaN: such voxels keep their original value.
    outside = np.isnan(gen_on_image)
    weight[outside] = 0.0
    gen_on_image[outside], change_on_image[outside] = 0.0, 0.0

    out = volume.array.copy()
    orig = out[sl].astype(np.float32)
    if residual_hu > 0:
        replace = np.clip(np.abs(change_on_image) / residual_hu - 1.0, 0.0, 1.0)
        target = (1.0 - replace) * (orig + change_on_image) + replace * gen_on_image
    else:
        target = gen_on_image
    blended = orig + weight * (target - orig)
    if np.issubdtype(out.dtype, np.integer):
        info = np.iinfo(out.dtype)
        blended = np.clip(np.rint(blended), info.min, info.max)
    touched = (weight > 0) & (blended != orig)
    sub = out[sl]
    sub[touched] = blended[touched].astype(out.dtype)
    return volume.with_array(out)


def _to_block(array: np.ndarray, grid: sitk.Image, block: sitk.Image) -> np.ndarray:
    """A model-grid array resampled (linearly) onto an image block; NaN outside the model box."""
    image = sitk.GetImageFromArray(array)
    image.CopyInformation(grid)
    return sitk.GetArrayFromImage(sitk.Resample(image, block, sitk.Transform(), sitk.sitkLinear, float("nan"),
                                                sitk.sitkFloat32))
