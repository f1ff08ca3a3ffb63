"""Radiomics features of a tumour: texture (conditioning vector for synthesis) and shape, plus normalization and
named texture presets.

All extraction goes through one pyradiomics parameter file (``data/radiomics_ct.yaml``) so that features computed
for training, for presets and for a user's tumour are comparable; ``PARAMS_VERSION`` names that file's contents.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import functools
import json
import logging
import math
from pathlib import Path
from typing import Iterable, Mapping, Optional, Union

import numpy as np
import SimpleITK as sitk

from .errors import InvalidMaskError, ModelError, RadSynthError
from .volume import Volume, mask_on_grid

DATA_DIR = Path(__file__).parent / "data"
PARAMS_PATH = DATA_DIR / "radiomics_ct.yaml"
PRESETS_PATH = DATA_DIR / "texture_presets.json"
#: Must match the ``params-version`` comment in PARAMS_PATH; bump both whenever the parameters change.
PARAMS_VERSION = "ct-v1"

TEXTURE_CLASSES = ("firstorder", "glcm", "glrlm", "glszm", "gldm", "ngtdm")
SHAPE_CLASSES = ("shape",)
#: Below this many voxels co-occurrence/run/zone statistics are dominated by the border and mean nothing.
MIN_VOXELS = 8
#: Native voxels of image context kept around the tumour before pyradiomics resamples (see _crop_around).
IMAGE_MARGIN = 24
PRESET_SOURCES = {"lung1-tumor": "lung1", "lung2-tumor": "lung2"}

MaskLike = Union[Volume, np.ndarray]


# -- pyradiomics plumbing -----------------------------------------------------------------------------------------
def _radiomics():
    import radiomics  # deferred: importing pyradiomics is slow and most callers only need presets or names
    # pyradiomics warns on stderr for things the caller already handles (e.g. resampling notes); only errors matter.
    logging.getLogger("radiomics").setLevel(logging.ERROR)
    return radiomics


@functools.lru_cache(maxsize=None)
def _feature_names(classes: tuple[str, ...]) -> tuple[str, ...]:
    available = _radiomics().getFeatureClasses()
    names: list[str] = []
    for cls in classes:
        # Default-enabled = not deprecated, which is exactly what an empty featureClass entry enables.
        enabled = sorted(n for n, deprecated in available[cls].getFeatureNames().items() if not deprecated)
        names += [f"{cls}_{n}" for n in enabled]
    return tuple(names)


def texture_feature_names() -> list[str]:
    """Fixed order of texture features: classes in TEXTURE_CLASSES order, names sorted within each class."""
    return list(_feature_names(TEXTURE_CLASSES))


def shape_feature_names() -> list[str]:
    return list(_feature_names(SHAPE_CLASSES))


@functools.lru_cache(maxsize=None)
def _extractor(classes: tuple[str, ...]):
    from radiomics.featureextractor import RadiomicsFeatureExtractor
    _radiomics()
    extractor = RadiomicsFeatureExtractor(str(PARAMS_PATH))
    extractor.disableAllFeatures()
    extractor.enableFeaturesByName(**{cls: [] for cls in classes})
    return extractor


def _sitk_pair(image: Volume, mask: MaskLike, resampled: bool = True) -> tuple[sitk.Image, sitk.Image]:
    """(image, mask) for pyradiomics. The image is cut around the tumour; the mask too when pyradiomics will not
    resample (without resampling it requires both on one grid)."""
    if isinstance(mask, Volume):
        inside = mask_on_grid(mask, image).array > 0
    else:
        mask = np.asarray(mask)
        if mask.shape != image.shape:
            raise InvalidMaskError(f"The mask (size {mask.shape}) does not match the image (size {image.shape}); "
                                   "it must be drawn on the same volume.")
        inside = mask > 0
    count = int(inside.sum())
    if count == 0:
        raise InvalidMaskError("The tumour mask is empty: draw the tumour with the Segment Editor first.")
    if count < MIN_VOXELS:
        raise InvalidMaskError(f"The tumour mask has only {count} voxel(s); texture cannot be measured on fewer "
                               f"than {MIN_VOXELS}. Draw the whole tumour, not just a few points.")
    cropped = _crop_around(image, inside)
    if not resampled:
        return cropped.to_sitk(), _crop_around(image.label_like(inside), inside).to_sitk()
    return cropped.to_sitk(), image.label_like(inside).to_sitk()


def _crop_around(image: Volume, inside: np.ndarray) -> Volume:
    """Image cut to the tumour plus IMAGE_MARGIN voxels.

    The B-spline interpolator prefilters the *whole* image it is given, which made a full 512² CT three times slower
    than needed. The mask is not cropped: pyradiomics aligns its 1.5 mm grid to the mask, so the sampled positions stay
    those of a direct pyradiomics call, and the prefilter's influence decays by ~0.27 per voxel, so at this margin
    the interpolated values are the same (the tests compare against pyradiomics on the full image).
    """
    idx = np.argwhere(inside)
    lo = np.maximum(idx.min(axis=0) - IMAGE_MARGIN, 0)
    hi = np.minimum(idx.max(axis=0) + IMAGE_MARGIN + 1, inside.shape)
    cropped = image.with_array(image.array[tuple(slice(a, b) for a, b in zip(lo, hi))])
    cropped.origin = tuple(float(v) for v in image.index_to_physical(lo[None])[0])
    return cropped


def _extract(classes: tuple[str, ...], image: Volume, mask: MaskLike) -> dict[str, float]:
    extractor = _extractor(classes)
    img, msk = _sitk_pair(image, mask, resampled=bool(extractor.settings.get("resampledPixelSpacing")))
    try:
        result = extractor.execute(img, msk, label=1)
    except ValueError as exc:  # pyradiomics' checkMask refusals (ROI too thin/small after resampling)
        raise InvalidMaskError("Texture cannot be measured on this tumour mask: it is too thin or too small on "
                               f"the 1.5 mm measurement grid ({exc}). Draw the whole tumour in 3D.") from exc
    except RuntimeError as exc:  # SimpleITK inside pyradiomics: image and mask geometry disagree
        raise InvalidMaskError(f"Texture cannot be measured: pyradiomics could not use the image and mask together "
                               f"({str(exc).strip().splitlines()[-1]}).") from exc
    names = _feature_names(classes)
    missing = [n for n in names if f"original_{n}" not in result]
    if missing:
        raise RadSynthError(f"pyradiomics did not return the features {', '.join(missing)}; "
                            "the installed pyradiomics version does not match radsynth.")
    return {n: float(result[f"original_{n}"]) for n in names}


def texture_features(image: Volume, mask: MaskLike) -> dict[str, float]:
    """First-order and texture features of the tumour, ordered as ``texture_feature_names()``.

    ``mask`` is a label Volume (resampled onto the image grid if needed) or a (k, j, i) array on the image grid;
    any non-zero voxel is tumour.
    """
    return _extract(TEXTURE_CLASSES, image, mask)


def shape_features(image: Volume, mask: MaskLike) -> dict[str, float]:
    """pyradiomics shape features (``shape_*``), measured on the 1.5 mm grid of the parameter file."""
    return _extract(SHAPE_CLASSES, image, mask)


# -- normalization ------------------------------------------------------------------------------------------------
def _vector(names: Iterable[str], features: Mapping[str, float]) -> np.ndarray:
    names = list(names)
    missing = [n for n in names if n not in features]
    if missing:
        shown = ", ".join(missing[:10]) + (f" … ({len(missing)} in all)" if len(missing) > 10 else "")
        raise RadSynthError(f"The feature set is incomplete; missing: {shown}.")
    return np.array([float(features[n]) for n in names], dtype=np.float64)


@dataclasses.dataclass(eq=False)  # numpy fields make the generated __eq__ ambiguous
class FeatureNormalizer:
    """Per-feature z-score fitted on training tumours.

    Normalized values are clipped to ±CLIP standard deviations: a request far outside the training distribution
    (an extreme preset, a hand-edited JSON) then acts like the most extreme training tumour instead of feeding the
    model values it has never seen.
    """

    names: tuple[str, ...]
    mean: np.ndarray
    std: np.ndarray
    params_version: str = PARAMS_VERSION

    CLIP = 5.0
    #: Constant features (std 0) would divide by zero; the floor is relative so that it is scale-free.
    REL_STD_FLOOR = 1e-6

    @classmethod
    def fit(cls, names: Iterable[str], rows: list[Mapping[str, float]]) -> "FeatureNormalizer":
        names = tuple(names)
        if not rows:
            raise RadSynthError("Cannot fit feature normalization without any training tumours.")
        table = np.stack([_vector(names, row) for row in rows])
        table[~np.isfinite(table)] = np.nan  # a few failed extractions should not poison a whole column
        empty = [n for n, ok in zip(names, np.isfinite(table).any(axis=0)) if not ok]
        if empty:
            raise RadSynthError(f"No valid training values for: {', '.join(empty)}.")
        mean = np.nanmean(table, axis=0)
        std = np.nanstd(table, axis=0)
        std = np.maximum(std, cls.REL_STD_FLOOR * np.maximum(np.abs(mean), 1.0))
        return cls(names, mean, std)

    def normalize(self, features: Mapping[str, float]) -> np.ndarray:
        x = _vector(self.names, features)
        bad = [n for n, v in zip(self.names, x) if not math.isfinite(v)]
        if bad:
            raise RadSynthError(f"These features are not finite numbers: {', '.join(bad)}.")
        return np.clip((x - self.mean) / self.std, -self.CLIP, self.CLIP).astype(np.float32)

    def denormalize(self, vec) -> dict[str, float]:
        vec = np.asarray(vec, dtype=np.float64).reshape(-1)
        if vec.size != len(self.names):
            raise RadSynthError(f"Expected {len(self.names)} normalized features, got {vec.size}.")
        return {n: float(v) for n, v in zip(self.names, self.mean + vec * self.std)}

    def to_dict(self) -> dict:
        return {"names": list(self.names), "mean": [float(v) for v in self.mean],
                "std": [float(v) for v in self.std], "params_version": self.params_version, "clip": self.CLIP}

    @classmethod
    def from_dict(cls, d: Mapping) -> "FeatureNormalizer":
        try:
            names = tuple(str(n) for n in d["names"])
            mean = np.asarray(d["mean"], dtype=np.float64)
            std = np.asarray(d["std"], dtype=np.float64)
            version = str(d["params_version"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"The model card's feature normalization is unreadable ({exc!r}).") from exc
        if not (len(names) == mean.size == std.size) or not np.all(std > 0):
            raise ModelError("The model card's feature normalization is inconsistent (names/mean/std differ in "
                             "length, or a standard deviation is not positive).")
        return cls(names, mean, std, version)

    def require_current_params(self) -> None:
        """Features from a different parameter file are not comparable; refuse rather than synthesize nonsense."""
        if self.params_version != PARAMS_VERSION:
            raise ModelError(f"This model was trained with radiomics parameters {self.params_version!r} but this "
                             f"radsynth computes {PARAMS_VERSION!r}; use a matching model or radsynth version.")


# -- presets and user feature files -------------------------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def _presets() -> dict:
    with open(PRESETS_PATH, encoding="utf-8") as fh:
        return json.load(fh)


def list_presets() -> list[str]:
    return sorted(_presets()["presets"])


def load_preset(name: str) -> dict[str, float]:
    presets = _presets()["presets"]
    if name not in presets:
        raise RadSynthError(f"Unknown texture preset {name!r}; available: {', '.join(sorted(presets))}.")
    return dict(presets[name])


def unknown_names_message(unknown: Iterable[str], known: Iterable[str], where: str) -> str:
    """``where``: these names are not features, each with the closest known name when one is close."""
    known = list(known)
    unknown = list(unknown)
    parts = []
    for name in unknown[:8]:
        close = difflib.get_close_matches(str(name), known, n=1, cutoff=0.6)
        parts.append(f"{name!r} (did you mean {close[0]}?)" if close else repr(name))
    more = f" and {len(unknown) - 8} more" if len(unknown) > 8 else ""
    return (f"{where}: unknown texture feature name(s) {', '.join(parts)}{more}. Names are pyradiomics' "
            "(class_Feature, e.g. firstorder_Mean); list them with `radsynth presets --show`.")


def load_features_json(path: Union[str, Path], names: Optional[Iterable[str]] = None) -> dict[str, float]:
    """Read ``{name: value}`` or ``{"features": {name: value}, "params_version": ...}`` written by a user.

    Every name must be one of ``names`` (default: the texture features RadSynth measures); a misspelled one is
    refused with the close match, since a silently ignored feature would leave the texture at the source's value."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RadSynthError(f"Feature file not found: {path}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RadSynthError(f"{path.name} is not valid JSON: {exc}") from None
    if isinstance(data, dict) and "features" in data:
        version = data.get("params_version")
        if version is not None and version != PARAMS_VERSION:
            raise RadSynthError(f"{path.name} was computed with radiomics parameters {version!r}; this radsynth "
                                f"uses {PARAMS_VERSION!r}, so the values are not comparable.")
        data = data["features"]
    if not isinstance(data, dict) or not data:
        raise RadSynthError(f"{path.name} must hold a JSON object mapping feature names to numbers.")
    bad = [k for k, v in data.items()
           if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v)]
    if bad:
        raise RadSynthError(f"{path.name}: these features are not finite numbers: {', '.join(map(str, bad))}.")
    known = list(names) if names is not None else texture_feature_names()
    unknown = [k for k in data if k not in known]
    if unknown:
        raise RadSynthError(unknown_names_message(unknown, known, path.name))
    return {str(k): float(v) for k, v in data.items()}


def outside_range_warnings(features: Mapping[str, float], ranges: Mapping[str, tuple[float, float]],
                           where: str) -> list[str]:
    """One line per feature of ``features`` beyond ``ranges`` ({name: (lowest, highest)} over the model's
    training tumours), worded as for a slider set beyond them: the model never saw such a tumour."""
    return [f"{where}: {name} = {value:g} is outside the tumours this model was trained on ({low:g} to {high:g}); "
            "the result may not follow it." for name, value in features.items() if name in ranges
            for low, high in [ranges[name]] if not low <= value <= high]


def texture_source(*, preset: Optional[str] = None, features_file: Union[str, Path, None] = None,
                   image: Optional[Volume] = None, mask: Optional[MaskLike] = None) -> dict[str, float]:
    """Target texture features from exactly one source: a named preset, a feature file, or a tumour (image + mask,
    measured here). The CLI, the panel logic and the sliders all choose the texture source through this."""
    chosen = [n for n, v in (("a preset", preset), ("a feature file", features_file),
                             ("a tumour", image if mask is not None else None)) if v is not None]
    if len(chosen) != 1:
        raise RadSynthError("Choose exactly one texture source: a preset, a feature file, or a tumour "
                            f"(got {', '.join(chosen) or 'none'}).")
    if preset is not None:
        return load_preset(preset)
    if features_file is not None:
        return load_features_json(features_file)
    return texture_features(image, mask)


def write_presets(path: Path = PRESETS_PATH) -> dict:
    """Regenerate the preset file from the real sample tumours (run after changing the parameter file)."""
    from .sample_data import sample_path
    from .volume import read_volume
    presets = {}
    for name, case in PRESET_SOURCES.items():
        image = read_volume(sample_path(case, "image"))
        label = read_volume(sample_path(case, "label"))
        presets[name] = texture_features(image, label)
    doc = {"params_version": PARAMS_VERSION,
           "source": "pyradiomics sample chest CTs (NSCLC tumours), label 1",
           "presets": presets}
    Path(path).write_text(json.dumps(doc, indent=1, allow_nan=False) + "\n", encoding="utf-8")
    _presets.cache_clear()
    return doc


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m radsynth.radiomics")
    parser.add_argument("--write-presets", action="store_true", help=f"regenerate {PRESETS_PATH.name}")
    args = parser.parse_args(argv)
    if args.write_presets:
        doc = write_presets()
        print(f"wrote {len(doc['presets'])} presets ({len(texture_feature_names())} features) to {PRESETS_PATH}")
    else:
        parser.print_help()


if __name__ == "__main__":
    main()
