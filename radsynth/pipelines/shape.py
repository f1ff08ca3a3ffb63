"""Tumour shape generation (TumorSynth part 2): radiomics shape features → a tumour mask placed in a CT.

Scale is separated from shape. The GAN draws shapes in a *normalized frame*: a G³ grid (32³) in which every
training tumour was rescaled so that its farthest voxel lies ``FRAME_FILL``/2 of the grid from its centroid (the
object fills the central ~60%). It is therefore conditioned only on scale-invariant descriptors:

  * Sphericity, Elongation, Flatness (already dimensionless);
  * the length features divided by V^(1/3): Maximum3DDiameter, Maximum2DDiameter{Slice,Column,Row},
    Major/Minor/LeastAxisLength;
  * SurfaceArea / V^(2/3);

with V the mesh volume, all as pyradiomics defines them (``radsynth.shape_features``). The requested volume is not
a condition: it is met exactly by scaling the frame voxel to s = (V_req / V_gen)^(1/3) mm when placing the mask.
This keeps the condition in the range the model was trained on for any tumour size, and makes volume control exact
instead of learned.

Features that are not on a slider are filled with the conditional mean of a Gaussian fitted to the training
features (normalized space), so a slider state stays a plausible, in-distribution request.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Mapping

import numpy as np
import torch
from scipy import ndimage

from .. import models
from ..conditioning import conditional_fill, gaussian_from_card
from ..numbers import finite_number
from ..errors import ModelError, RadSynthError
from ..models import bundled, load_into
from ..nets.shape_gan import ShapeGenerator
from ..radiomics import FeatureNormalizer
from ..shape_features import fast_shape_features
from .shape_place import place_shape  # noqa: F401  (part of this module's API)

DEMO_SHAPE = "demo-shape-gan"
KIND = "shape-gan"
#: Version of the frame and feature definitions below; stored as the normalizer's params_version.
FRAME_VERSION = "shape-frame-v1"
FRAME_FILL = 0.6
VOLUME = "volume_ml"
SLIDER_FEATURES = ("volume_ml", "shape_Sphericity", "shape_Elongation", "shape_Flatness")

_RATIOS = ("shape_Sphericity", "shape_Elongation", "shape_Flatness")
_LENGTHS = ("shape_Maximum3DDiameter", "shape_Maximum2DDiameterSlice", "shape_Maximum2DDiameterColumn",
            "shape_Maximum2DDiameterRow", "shape_MajorAxisLength", "shape_MinorAxisLength", "shape_LeastAxisLength")
COND_FEATURES = _RATIOS + tuple(f"{n}/V^(1/3)" for n in _LENGTHS) + ("shape_SurfaceArea/V^(2/3)",)
#: Scale-dependent and redundant with SurfaceArea and the volume; accepted in input (a measured tumour) but unused.
_IGNORED = ("shape_VoxelVolume", "shape_SurfaceVolumeRatio")
_MEANING = {"shape_Sphericity": "a perfect sphere", "shape_Elongation": "not elongated: the two longest axes are "
            "equal", "shape_Flatness": "not flat: the shortest axis equals the longest"}


def conditioning_features(measured: Mapping[str, float]) -> dict[str, float]:
    """pyradiomics shape features (any units) → the scale-invariant conditioning features + volume_ml."""
    v = float(measured["shape_MeshVolume"])
    if not v > 0:
        raise RadSynthError("The shape has no volume; it cannot be described.")
    out = {n: float(measured[n]) for n in _RATIOS}
    out.update({f"{n}/V^(1/3)": float(measured[n]) / v ** (1 / 3) for n in _LENGTHS})
    out["shape_SurfaceArea/V^(2/3)"] = float(measured["shape_SurfaceArea"]) / v ** (2 / 3)
    out[VOLUME] = v / 1000.0
    return out


@dataclasses.dataclass
class ShapeModel:
    generator: ShapeGenerator
    normalizer: FeatureNormalizer
    gauss_mean: np.ndarray     # over normalized COND_FEATURES
    gauss_cov: np.ndarray
    grid: int
    card: dict
    device: torch.device

    @property
    def names(self) -> tuple[str, ...]:
        return self.normalizer.names

    @property
    def is_demo(self) -> bool:
        return bool(self.card.get("demo"))


def build_shape_model(folder: Path, card: dict, state: dict, device: torch.device) -> ShapeModel:
    """The "shape-gan" builder (registered in radsynth.models); the registry has checked card and weights."""
    normalizer = FeatureNormalizer.from_dict(card["features"])
    grid = int(card["grid"])
    generator = ShapeGenerator(len(normalizer.names), card["architecture"])
    if normalizer.params_version != FRAME_VERSION or tuple(normalizer.names) != COND_FEATURES:
        raise ModelError(f"The shape model in {folder} uses feature definitions {normalizer.params_version!r}; "
                         f"this radsynth needs {FRAME_VERSION!r}. Use a matching model or radsynth version.")
    gaussian = gaussian_from_card(card, len(COND_FEATURES))
    load_into(generator, state, folder)
    return ShapeModel(generator.to(device).eval(), normalizer, gaussian.mean, gaussian.cov, grid, card, device)


def load_shape_model(folder: Path | str | None = None, device: str | torch.device | None = "auto") -> ShapeModel:
    """Load a shape GAN folder (default: the bundled demo model); ModelError if missing, corrupt or not a shape GAN."""
    return models.load(KIND, Path(folder) if folder is not None else bundled(DEMO_SHAPE), device)


def _canonical(fixed: Mapping[str, float]) -> dict[str, float]:
    """Accept slider values, conditioning features, or raw pyradiomics shape features of a measured tumour."""
    vals = {k: finite_number(v, k) for k, v in fixed.items()}
    unknown = [k for k in vals if k not in COND_FEATURES and k != VOLUME and k != "shape_MeshVolume"
               and k not in _LENGTHS and k != "shape_SurfaceArea" and k not in _IGNORED]
    if unknown:
        raise RadSynthError(f"Unknown shape feature(s): {', '.join(unknown)}. Known: {', '.join(SLIDER_FEATURES)}, "
                            f"{', '.join(COND_FEATURES[3:])}.")
    out = {k: v for k, v in vals.items() if k in COND_FEATURES or k == VOLUME}
    if VOLUME not in out and "shape_MeshVolume" in vals:
        out[VOLUME] = vals["shape_MeshVolume"] / 1000.0
    raw = [k for k in vals if k in _LENGTHS or k == "shape_SurfaceArea"]
    if raw:
        if VOLUME not in out or not out[VOLUME] > 0:
            raise RadSynthError(f"{raw[0]} is in mm; give the volume (volume_ml) too so it can be related to size.")
        v = out[VOLUME] * 1000.0
        for k in raw:
            key = f"{k}/V^(2/3)" if k == "shape_SurfaceArea" else f"{k}/V^(1/3)"
            out.setdefault(key, vals[k] / v ** (2 / 3 if k == "shape_SurfaceArea" else 1 / 3))
    return out


def _validate(values: Mapping[str, float]) -> None:
    if VOLUME in values and not values[VOLUME] > 0:
        raise RadSynthError(f"The tumour volume must be more than 0 mL (got {values[VOLUME]:g} mL).")
    for name in _RATIOS:
        if name in values and not 0 < values[name] <= 1:
            label = name.removeprefix("shape_")
            raise RadSynthError(f"{label} must be between 0 and 1 (1 = {_MEANING[name]}); got {values[name]:g}.")
    e, f = values.get("shape_Elongation"), values.get("shape_Flatness")
    if e is not None and f is not None and f > e + 1e-9:
        raise RadSynthError(f"Flatness ({f:g}) cannot exceed elongation ({e:g}): both compare an axis to the longest "
                            "one, and flatness uses the shortest axis. Lower flatness or raise elongation.")
    for name in COND_FEATURES[3:]:
        if name in values and not values[name] > 0:
            raise RadSynthError(f"{name} must be positive (got {values[name]:g}).")


def complete_features(model: ShapeModel, fixed: Mapping[str, float]) -> dict[str, float]:
    """Every conditioning feature (plus volume_ml when given): the fixed ones as given, the others filled with the
    conditional mean of the training Gaussian given the fixed ones."""
    values = _canonical(fixed)
    _validate(values)
    names = list(model.names)
    fixed = {i: (values[n] - model.normalizer.mean[i]) / model.normalizer.std[i]
             for i, n in enumerate(names) if n in values}
    x = conditional_fill(model.gauss_mean, model.gauss_cov, fixed)
    filled = model.normalizer.denormalize(x)
    out = {n: (values[n] if n in values else filled[n]) for n in names}
    # a filled ratio can fall outside its definition range when the fixed values are extreme
    for n in _RATIOS:
        if n not in values:
            out[n] = float(min(max(out[n], 1e-3), 1.0))
    if out["shape_Flatness"] > out["shape_Elongation"]:
        if "shape_Flatness" in values:
            out["shape_Elongation"] = out["shape_Flatness"]
        else:
            out["shape_Flatness"] = out["shape_Elongation"]
    if VOLUME in values:
        out[VOLUME] = values[VOLUME]
    return out


def _clean(logits: np.ndarray) -> np.ndarray:
    mask = logits > 0
    labels, n = ndimage.label(mask)
    if n == 0:
        raise ModelError("The shape model produced an empty mask for these settings; try another seed.")
    if n > 1:
        mask = labels == (np.argmax(np.bincount(labels.ravel())[1:]) + 1)
    return ndimage.binary_fill_holes(mask)


@torch.no_grad()
def generate_shape(model: ShapeModel, features: Mapping[str, float], seed: int = 0, n: int = 1) -> list[np.ndarray]:
    """n bool masks on the normalized G³ grid; sample i uses noise seed ``seed + i`` (so results are reproducible
    and the i-th of a batch equals a single call with that seed)."""
    if n < 1:
        raise RadSynthError("Ask for at least one shape.")
    full = complete_features(model, features)
    cond = torch.from_numpy(model.normalizer.normalize(full)).to(model.device)
    z = torch.stack([torch.randn(model.generator.z_dim, generator=torch.Generator().manual_seed(int(seed) + i))
                     for i in range(max(n, 2))]).to(model.device)
    # Always a batch of >= 2: PyTorch runs small single-sample 3D convs on a slower CPU kernel, and a different
    # kernel could flip a borderline voxel, so this also makes a single call equal to its place in a batch.
    logits = model.generator(z, cond.expand(len(z), -1)).float().cpu().numpy()[:n, 0]
    return [_clean(x) for x in logits]


def scale_to_volume(mask32: np.ndarray, volume_ml: float) -> tuple[np.ndarray, float]:
    """(mask, voxel size in mm) such that the mask's mesh volume at that isotropic voxel size equals the request."""
    volume_ml = finite_number(volume_ml, "volume_ml")
    _validate({VOLUME: volume_ml})
    mask = np.asarray(mask32) > 0
    unit = fast_shape_features(mask, (1.0, 1.0, 1.0))["shape_MeshVolume"]
    if not unit > 0:
        raise RadSynthError("The shape is too thin to have a volume; try another seed.")
    return mask, float((volume_ml * 1000.0 / unit) ** (1 / 3))


def preview(model: ShapeModel, features: Mapping[str, float], seed: int = 0) -> tuple[np.ndarray, dict]:
    """Slider fast path: one mask and its pyradiomics shape features at the voxel size that meets the requested
    volume (plus volume_ml)."""
    if VOLUME not in features and "shape_MeshVolume" not in features:
        raise RadSynthError("Set the tumour volume (volume_ml) to preview a shape.")
    full = complete_features(model, features)
    mask = generate_shape(model, full, seed=seed, n=1)[0]
    # Measured once at unit voxel size, then scaled: the mesh of a uniformly scaled grid is the scaled mesh, so
    # this equals measuring at the scaled voxel size and halves the slider's feature cost.
    unit = fast_shape_features(mask, (1.0, 1.0, 1.0))
    if not unit["shape_MeshVolume"] > 0:
        raise RadSynthError("The shape is too thin to have a volume; try another seed.")
    s = (full[VOLUME] * 1000.0 / unit["shape_MeshVolume"]) ** (1 / 3)
    power = {"shape_MeshVolume": 3, "shape_VoxelVolume": 3, "shape_SurfaceArea": 2, "shape_SurfaceVolumeRatio": -1,
             "shape_Sphericity": 0, "shape_Elongation": 0, "shape_Flatness": 0}
    measured = {k: v * s ** power.get(k, 1) for k, v in unit.items()}
    measured[VOLUME] = measured["shape_MeshVolume"] / 1000.0
    return mask, measured
