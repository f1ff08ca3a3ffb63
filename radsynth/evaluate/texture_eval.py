"""Texture-generator fidelity: requested vs re-extracted texture features of synthetic tumours in held-out lung.

Each held-out region (lesion-sized ellipsoid in aerated lung of the half the texture model never trained on) gets a
tumour-like request: the lung1 or lung2 tumour preset, or an interpolation between them with a random weight, so the
request a region gets is unrelated to the region itself. Features are compared on the model's normalized scale.

Two reference points sit next to the model's numbers:
  * shuffled condition: requests permuted across regions (a model that ignores its condition);
  * untouched tissue: the request against the healthy tissue's own features, i.e. doing nothing at all. On raw
    features the paper's per-sample protocol already scores this highly.

The requests span one axis (lung1 ↔ lung2), so the per-feature correlations measure how well the output follows
that axis; the slider sweeps probe directions off it, the way the panel's sliders do.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
from scipy import ndimage

from ..errors import RadSynthError
from ..pipelines.loading import TumorModels
from ..pipelines.texture_fill import TEXTURE_SLIDER_FEATURES, training_range
from ..pipelines.tumor import synthesize
from ..radiomics import load_preset, texture_features
from ..sample_data import sample_path
from ..volume import Volume, read_volume
from . import fidelity as fd
from .heldout import heldout_regions
from .montage import MontageBlock, montage_blocks

PRESETS = ("lung1-tumor", "lung2-tumor")
CASES = ("lung1", "lung2")
KEY_FEATURES = ("firstorder_Mean", "firstorder_Entropy", "firstorder_90Percentile", "glcm_Contrast",
                "glrlm_RunEntropy", "glszm_ZoneEntropy")
#: slider sweeps around the preset's value (±150 HU, ±1.5 bits, ×¼…×4), for a card without a training range; with
#: one, each slider is swept across it, as far as the panel's slider goes
SWEEP_POINTS = 7
SWEEPS = {"firstorder_Mean": lambda v: v + np.linspace(-150.0, 150.0, SWEEP_POINTS),
          "firstorder_Entropy": lambda v: v + np.linspace(-1.5, 1.5, SWEEP_POINTS),
          "glcm_Contrast": lambda v: v * 2.0 ** np.linspace(-2.0, 2.0, SWEEP_POINTS)}

Log = Callable[[str], None]
#: the slider sweep also measures each lesion this far inside its edge
INTERIOR_MM = 3.0
#: HU window of the sweep's montage (soft tissue: a lesion's texture, not the lung, is what it shows)
MONTAGE_WINDOW = (-350.0, 250.0)


def _normalize(models: TumorModels) -> fd.Normalize:
    """The model's own conditioning scale (training z-score, clipped as the model sees it)."""
    n = models.normalizer
    return lambda x: np.clip((np.asarray(x, dtype=np.float64) - n.mean) / n.std, -n.CLIP, n.CLIP)


def _regions(n: int, seed: int) -> list[tuple[str, Volume, np.ndarray]]:
    """n held-out regions alternating between the two sample CTs."""
    images = {c: read_volume(sample_path(c, "image")) for c in CASES}
    per_case = {c: heldout_regions(images[c], -(-n // len(CASES)), seed + i) for i, c in enumerate(CASES)}
    out = []
    for k in range(max(len(v) for v in per_case.values())):
        out += [(c, images[c], per_case[c][k]) for c in CASES if k < len(per_case[c])]
    if len(out) < n:
        raise RadSynthError(f"Only {len(out)} held-out lung regions could be placed; asked for {n}.")
    return out[:n]


def _requests(names: Sequence[str], n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(weights, rows): weight 0 = lung1 preset, 1 = lung2 preset; both presets appear once when n ≥ 2."""
    a, b = (np.array([load_preset(p)[k] for k in names]) for p in PRESETS)
    weights = rng.uniform(0.0, 1.0, n)
    weights[:2] = (0.0, 1.0)[:n]
    return weights, (1 - weights)[:, None] * a + weights[:, None] * b


def _synth(models: TumorModels, image: Volume, mask: np.ndarray, target: dict, steps: Optional[int], seed: int,
           overrides: Optional[dict] = None):
    """(achieved features in the model's order, the result)."""
    res = synthesize(image, image.with_array(mask.astype(np.uint8)), models, target=target, overrides=overrides,
                     steps=steps, seed=seed)
    return np.array([a for _, _, a in res.features], dtype=np.float64), res


def evaluate_texture(models: TumorModels, n: int = 12, steps: Optional[int] = None, seed: int = 0,
                     out: Optional[Path] = None,
                     sweep: bool = True, log: Log = lambda s: None) -> dict:
    """Fidelity report of the texture model over n held-out lung regions (synthesis with ``steps`` sampler steps,
    default the model's)."""
    steps = steps or models.default_steps
    if n < 3:
        raise RadSynthError("Evaluate at least 3 regions: correlations across fewer samples are meaningless.")
    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    names = list(models.normalizer.names)
    weights, requested = _requests(names, n, rng)
    regions = _regions(n, seed)
    achieved, untouched, sample_s = [], [], []
    for i, ((case, image, mask), row) in enumerate(zip(regions, requested)):
        t = time.perf_counter()
        got, _ = _synth(models, image, mask, dict(zip(names, row)), steps, seed + i)
        achieved.append(got)
        healthy = texture_features(image, mask)
        untouched.append([healthy[k] for k in names])
        sample_s.append(time.perf_counter() - t)
        log(f"texture: {i + 1}/{n} ({case}, {int(mask.sum())} voxels, weight {weights[i]:.2f}) {sample_s[-1]:.1f} s")
    achieved, untouched = np.array(achieved), np.array(untouched)
    normalize = _normalize(models)
    section = fd.fidelity(requested, achieved, names, rng, normalize=normalize)
    noop_table = fd.per_feature_correlation(requested, untouched, names)
    report = {
        "disclaimer": fd.DISCLAIMER,
        "models": models.versions, "demo_models": models.is_demo,
        "protocol": {"regions": n, "cases": list(CASES), "steps": steps, "seed": seed,
                     "requests": f"interpolations between presets {PRESETS[0]} (weight 0) and {PRESETS[1]} (1)",
                     "request_weights": [float(w) for w in weights],
                     "region_voxels": [int(m.sum()) for _, _, m in regions],
                     "normalized": "texture model's training normalizer (z-score, clipped at "
                                   f"±{models.normalizer.CLIP:g} SD)"},
        "texture": section,
        "untouched_tissue": {"per_feature_summary": fd.summarize_features(noop_table),
                             "per_sample": fd.per_sample_correlation(requested, untouched, normalize)},
        "timings_s": {"per_sample_mean": round(float(np.mean(sample_s)), 2),
                      "samples": round(float(np.sum(sample_s)), 1)},
    }
    if out is not None:
        out = Path(out)
        panels = [(k, normalize(requested)[:, names.index(k)], normalize(achieved)[:, names.index(k)])
                  for k in KEY_FEATURES if k in names]
        fd.scatter_plot(out / "texture_scatter.png", panels, "Texture: requested vs achieved (normalized, z)")
        fd.bar_plot(out / "texture_per_feature.png", section,
                    "Texture: per-feature Spearman vs shuffled condition")
    if sweep:
        report["sliders"] = texture_sweep(models, steps=steps, seed=seed, out=out)
    report["timings_s"]["total"] = round(time.perf_counter() - t0, 1)
    return report


def interior(mask: np.ndarray, spacing_kji, depth_mm: float = INTERIOR_MM) -> np.ndarray:
    """``mask`` without its rim: the voxels whose every neighbour within ``depth_mm`` (at least one voxel along each
    axis, so a thick-slice scan also loses its partial-volume end slices) is inside."""
    radius = np.ceil(depth_mm / np.asarray(spacing_kji, dtype=float)).astype(int)
    grid = np.ogrid[tuple(slice(-r, r + 1) for r in radius)]
    ball = sum((g / r) ** 2 for g, r in zip(grid, radius)) <= 1.0
    return ndimage.binary_erosion(mask > 0, structure=ball)


def texture_sweep(models: TumorModels, steps: Optional[int] = None, seed: int = 0, preset: str = PRESETS[0],
                  out: Optional[Path] = None) -> dict:
    """Each texture slider swept across the model's training range (the panel's slider range) from ``preset``, as
    the panel sends it (all three sliders set, the swept one moved, the other 90 features filled by the engine), in
    one held-out region per case with the same noise seed throughout → Spearman and slope of the achieved value per
    slider, over the whole mask (the feature as defined) and over its interior (the rim blurred into lung, which
    dominates small lesions' entropy and contrast, left out)."""
    base, steps = load_preset(preset), steps or models.default_steps
    ranges = training_range(models.normalizer, models.gaussian)
    regions = _regions(len(CASES), seed + 100)
    result, panels, extremes = {}, [], []
    for feature in TEXTURE_SLIDER_FEATURES:
        t0 = time.perf_counter()
        values = [float(v) for v in (np.linspace(*ranges[feature], SWEEP_POINTS) if feature in ranges
                                     else SWEEPS[feature](base[feature]))]
        j = list(models.normalizer.names).index(feature)
        per_region, pooled = {}, []
        for case, image, mask in regions:
            sliders = {f: float(base[f]) for f in TEXTURE_SLIDER_FEATURES}
            core = interior(mask, np.asarray(image.spacing)[::-1])
            got, inner, rendered = [], [], []
            for v in values:
                achieved, res = _synth(models, image, mask, base, steps, seed, dict(sliders, **{feature: v}))
                got.append(float(achieved[j]))
                inner.append(texture_features(res.volume, core)[feature])
                rendered.append(res.settings.get("texture_detail"))
                if out is not None and case == regions[0][0] and v in (values[0], values[-1]):
                    extremes.append(MontageBlock(image, res.volume, image.with_array(mask.astype(np.uint8)),
                                                 f"{feature} = {v:.3g} requested, {got[-1]:.3g} achieved "
                                                 f"(interior {inner[-1]:.3g})"))
            # ρ alone can be 1 for a response of a hundredth of a unit; the slope says whether the slider does anything
            per_region[case] = {"achieved": got, "spearman": fd.slider_monotonicity(values, got),
                                "slope": float(np.polyfit(values, got, 1)[0]), "fine_texture": rendered,
                                "interior": {"voxels": int(core.sum()), "achieved": inner,
                                             "spearman": fd.slider_monotonicity(values, inner),
                                             "slope": float(np.polyfit(values, inner, 1)[0])}}
            pooled += got
        result[feature] = {"preset": preset, "steps": steps, "requested": values, "per_region": per_region,
                           "seconds": round(time.perf_counter() - t0, 1)}
        for key, pick in (("", lambda r: r), ("interior_", lambda r: r["interior"])):
            for stat in ("spearman", "slope"):
                result[feature][key + stat] = float(np.mean([pick(r)[stat] for r in per_region.values()]))
        panels.append((feature, values * len(regions), pooled))
    if out is not None:
        fd.scatter_plot(Path(out) / "texture_sliders.png", panels,
                        f"Texture sliders from {preset}: requested vs achieved (other features filled)")
        # each slider at both ends of its range, in a soft-tissue window where a lesion's texture is visible
        montage_blocks(extremes, Path(out) / "texture_sliders_montage.png", window=MONTAGE_WINDOW, fov_mm=60.0)
    return result
