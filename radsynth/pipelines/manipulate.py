"""Tumour manipulations built from the two texture-path primitives (remove, synthesize) and the shape generator.

place      new tumour at a point (generated shape) or in a painted region (painted or generated shape)
move       remove at the old place, synthesize the same shape and texture at the new place
resize     remove over old ∪ new mask, synthesize on the new (scaled) mask with the old texture
retexture  keep the mask, synthesize a new texture (the masked input discards the old one)

Every operation validates all of its inputs before generating anything, so a refusal leaves no partial result.
"""

from __future__ import annotations

from typing import Callable, Mapping, Optional, Sequence

import numpy as np
import SimpleITK as sitk

from ..errors import InvalidMaskError, RadSynthError
from ..progress import CancelToken, ProgressFn, span
from ..radiomics import texture_features
from ..region import check_mask_fits, mask_center_and_extent
from ..shape_features import fast_shape_features
from ..volume import Volume, check_ct, mask_on_grid
from . import shape as shape_gen
from .loading import TumorModels, load_models
from ..result import Result
from .tumor import DEFAULT_GUIDANCE, REACH_MM, remove, synthesize


def transform_mask(image: Volume, mask: np.ndarray, shift_lps=(0.0, 0.0, 0.0), scale: float = 1.0) -> np.ndarray:
    """Mask moved by ``shift_lps`` mm and scaled by ``scale`` about its bounding-box centre, on the image grid.

    Keeps the ``scale³ × count`` voxels best covered by the moved shape: a 0.5 threshold on 5 mm slices would
    round the volume by whole slices.
    """
    center, _ = mask_center_and_extent(image, mask)
    ref = image.with_array(mask.astype(np.float32)).to_sitk()
    tx = sitk.Similarity3DTransform()
    # Resample maps output points to input points: the inverse of the wanted motion.
    tx.SetCenter(tuple(float(c) for c in center))
    tx.SetScale(1.0 / scale)
    tx.SetTranslation(tuple(-float(s) / scale for s in shift_lps))
    coverage = sitk.GetArrayFromImage(sitk.Resample(ref, ref, tx, sitk.sitkLinear, 0.0, sitk.sitkFloat32))
    wanted = int(round(mask.sum() * scale ** 3))
    if wanted < 1 or not (coverage > 0).any():
        raise InvalidMaskError("After moving/resizing, the tumour lies outside the image or is smaller than a voxel.")
    flat = coverage.ravel()
    keep = np.argpartition(-flat, min(wanted, flat.size) - 1)[:wanted]
    out = np.zeros(flat.size, dtype=bool)
    out[keep[flat[keep] > 0]] = True
    return out.reshape(coverage.shape)


def _combine(first: Result, second: Result, operation: str, mask: np.ndarray) -> Result:
    timings = {f"{first.operation}.{k}": v for k, v in first.timings.items()}
    timings.update({f"{second.operation}.{k}": v for k, v in second.timings.items()})
    settings = {first.operation: first.settings, second.operation: second.settings}
    return Result(operation, second.volume, second.volume.label_like(mask), second.tables, timings,
                  second.models, settings, first.warnings + second.warnings)


#: remover(image, mask, progress, cancel) -> Result: replaces the tissue under ``mask`` with healthy tissue
Remover = Callable[[Volume, Volume, Optional[ProgressFn], Optional[CancelToken]], Result]


def _remove_then_synthesize(operation: str, image: Volume, old: np.ndarray, cleared: np.ndarray, new: np.ndarray,
                            models: TumorModels, steps, eta, seed, progress, cancel,
                            remover: Optional[Remover] = None) -> Result:
    """Clear ``cleared`` with healthy tissue (``remover``, default the bridge's removal), then grow ``new`` with the
    texture measured on ``old`` beforehand."""
    target = texture_features(image, old)
    if remover is None:
        def remover(img, mask, prog, tok):
            return remove(img, mask, models, steps=steps, eta=eta, seed=seed, progress=prog, cancel=tok)
    removed = remover(image, image.label_like(cleared), span(progress, 0.0, 0.5, "remove"), cancel)
    placed = synthesize(removed.volume, image.label_like(new), models, target=target, steps=steps, eta=eta,
                        seed=seed, progress=span(progress, 0.5, 1.0, "synthesize"), cancel=cancel)
    return _combine(removed, placed, operation, new)


def _check_target(image: Volume, mask: np.ndarray, models: TumorModels, others: Sequence[Volume]) -> None:
    check_mask_fits(image, mask, models.spec, REACH_MM)
    for other in others:
        if (mask_on_grid(other, image).array.astype(bool) & mask).any():
            raise InvalidMaskError("The new tumour position overlaps another tumour; choose a different place.")


def move(image: Volume, tumor: Volume, shift_lps, *, others: Sequence[Volume] = (),
         models: Optional[TumorModels] = None, steps: Optional[int] = None, eta: Optional[float] = None,
         seed: int = 0, progress: Optional[ProgressFn] = None, cancel: Optional[CancelToken] = None,
         remover: Optional[Remover] = None) -> Result:
    """Move ``tumor`` by ``shift_lps`` (mm): same shape, same texture features, at the new place."""
    models = models or load_models()
    check_ct(image)
    old = mask_on_grid(tumor, image).array.astype(bool)
    new = transform_mask(image, old, shift_lps=shift_lps)
    _check_target(image, new, models, others)
    return _remove_then_synthesize("move", image, old, old, new, models, steps, eta, seed, progress, cancel, remover)


def resize(image: Volume, tumor: Volume, *, volume_ml: Optional[float] = None, scale: Optional[float] = None,
           models: Optional[TumorModels] = None, steps: Optional[int] = None, eta: Optional[float] = None,
           seed: int = 0, progress: Optional[ProgressFn] = None, cancel: Optional[CancelToken] = None,
           remover: Optional[Remover] = None) -> Result:
    """Scale ``tumor`` about its centre to ``volume_ml`` (or by a linear ``scale``), keeping its texture."""
    models = models or load_models()
    check_ct(image)
    old = mask_on_grid(tumor, image).array.astype(bool)
    if (volume_ml is None) == (scale is None):
        raise RadSynthError("Give either the new volume (mL) or a scale factor.")
    if volume_ml is not None:
        if not volume_ml > 0:
            raise RadSynthError(f"The new volume must be positive (got {volume_ml:g} mL).")
        current = old.sum() * float(np.prod(image.spacing)) / 1000.0  # voxel volume, as segment statistics show
        scale = (volume_ml / current) ** (1 / 3)
    if not scale > 0:
        raise RadSynthError(f"The scale factor must be positive (got {scale:g}).")
    new = transform_mask(image, old, scale=scale)
    union = old | new
    check_mask_fits(image, union, models.spec, REACH_MM)
    return _remove_then_synthesize("resize", image, old, union, new, models, steps, eta, seed, progress, cancel,
                                   remover)


def retexture(image: Volume, tumor: Volume, target: Mapping[str, float], *,
              texture_overrides: Optional[Mapping[str, float]] = None, guidance: float = DEFAULT_GUIDANCE,
              models: Optional[TumorModels] = None, steps: Optional[int] = None, eta: Optional[float] = None,
              seed: int = 0, progress: Optional[ProgressFn] = None,
              cancel: Optional[CancelToken] = None) -> Result:
    result = synthesize(image, tumor, models, target=target, overrides=texture_overrides, guidance=guidance,
                        steps=steps, eta=eta, seed=seed, progress=progress, cancel=cancel)
    result.operation = "retexture"
    return result


def place(image: Volume, target: Mapping[str, float], *, point_lps=None, painted: Optional[Volume] = None,
          shape: str = "generate", shape_features: Optional[Mapping[str, float]] = None,
          organ: Optional[Volume] = None, texture_overrides: Optional[Mapping[str, float]] = None,
          models: Optional[TumorModels] = None,
          shape_model: Optional["shape_gen.ShapeModel"] = None, guidance: float = DEFAULT_GUIDANCE,
          steps: Optional[int] = None, eta: Optional[float] = None, seed: int = 0,
          progress: Optional[ProgressFn] = None, cancel: Optional[CancelToken] = None) -> Result:
    """A new tumour with texture ``target``.

    At ``point_lps`` the shape comes from the shape generator (``shape_features`` incl. ``volume_ml``). With a
    ``painted`` region: ``shape="painted"`` uses it as drawn; ``"inside"`` generates a shape of the region's volume
    clipped to it; ``"around"`` generates one of the region's volume centred on it. ``texture_overrides`` set
    single texture features of ``target`` (see ``synthesize``).
    """
    check_ct(image)
    models = models or load_models()
    features = dict(shape_features or {})
    organ_arr = mask_on_grid(organ, image).array.astype(bool) if organ is not None else None
    if painted is not None:
        region = mask_on_grid(painted, image).array.astype(bool)
        if shape == "painted":
            return _as_place(synthesize(image, image.label_like(region), models, target=target,
                                        overrides=texture_overrides, guidance=guidance, steps=steps, eta=eta,
                                        seed=seed, progress=progress, cancel=cancel))
        if shape not in ("inside", "around"):
            raise RadSynthError(f"Unknown shape mode {shape!r}: use painted, inside or around.")
        point_lps, _ = mask_center_and_extent(image, region)
        features.setdefault(shape_gen.VOLUME, fast_shape_features(
            region, np.asarray(image.spacing)[::-1])["shape_MeshVolume"] / 1000.0)
        if shape == "inside":
            organ_arr = region if organ_arr is None else (region & organ_arr)
    if point_lps is None:
        raise RadSynthError("Click a point or paint a region where the tumour should go.")
    if shape_gen.VOLUME not in features:
        raise RadSynthError("Set the tumour volume (mL) for a generated shape.")
    shape_model = shape_model or shape_gen.load_shape_model(device=models.device)
    frame = shape_gen.generate_shape(shape_model, features, seed=seed)[0]
    frame, voxel_mm = shape_gen.scale_to_volume(frame, features[shape_gen.VOLUME])
    mask = shape_gen.place_shape(image, point_lps, frame, voxel_mm, organ=organ_arr)
    return _as_place(synthesize(image, mask, models, target=target, overrides=texture_overrides, guidance=guidance,
                                steps=steps, eta=eta, seed=seed, progress=progress, cancel=cancel))


def _as_place(result: Result) -> Result:
    result.operation = "place"
    return result
