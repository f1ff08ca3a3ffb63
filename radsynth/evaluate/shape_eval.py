"""Shape-generator fidelity: requested vs achieved shape features of generated masks, and slider sweeps.

Requests are slider states (sphericity, elongation, flatness drawn jointly from the model's training Gaussian,
volume log-uniform) completed by ``complete_features``, i.e. what the Slicer sliders send. Each generated mask is
scaled to the requested volume and measured with pyradiomics' shape definitions.

Two feature spaces are reported:
  * ``raw_pyradiomics``: the paper's space (lengths in mm, area in mm², volume in mm³). The volume is met exactly by
    construction, and every length grows with it, so both protocols are flattered here;
  * ``conditioning``: the scale-invariant features the model is actually conditioned on (normalized with the model's
    training normalizer). Its per-feature Spearman is the honest controllability number.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np

from ..errors import RadSynthError
from ..pipelines import shape as sh
from ..shape_features import fast_shape_features
from . import fidelity as fd

RATIOS = ("shape_Sphericity", "shape_Elongation", "shape_Flatness")
LENGTHS = ("shape_Maximum3DDiameter", "shape_Maximum2DDiameterSlice", "shape_Maximum2DDiameterColumn",
           "shape_Maximum2DDiameterRow", "shape_MajorAxisLength", "shape_MinorAxisLength", "shape_LeastAxisLength")
RAW_NAMES = RATIOS + LENGTHS + ("shape_SurfaceArea", "shape_MeshVolume")
VOLUME_RANGE_ML = (0.5, 50.0)   # ~1 to ~4.6 cm diameter: the lung-nodule-to-mass range the demo places
SWEEP_VOLUME_ML = 4.0
#: slider settings further than this from the training mean (in training SDs) are out of range and redrawn
RANGE_SD = 2.0

Log = Callable[[str], None]


def _slider_z(model: sh.ShapeModel) -> tuple[list[int], np.ndarray, np.ndarray]:
    idx = [list(model.names).index(n) for n in RATIOS]
    return idx, model.gauss_mean[idx], model.gauss_cov[np.ix_(idx, idx)]


def draw_targets(model: sh.ShapeModel, n: int, rng: np.random.Generator,
                 volume_range_ml: tuple[float, float] = VOLUME_RANGE_ML) -> list[dict[str, float]]:
    """n complete requests from random slider states within the training range."""
    idx, mean, cov = _slider_z(model)
    sd = np.sqrt(np.diag(cov))
    out: list[dict[str, float]] = []
    for _ in range(1000 * n):
        if len(out) == n:
            break
        z = rng.multivariate_normal(mean, cov)
        if np.any(np.abs(z - mean) > RANGE_SD * sd):
            continue
        values = {name: float(model.normalizer.mean[i] + z[k] * model.normalizer.std[i])
                  for k, (name, i) in enumerate(zip(RATIOS, idx))}
        values[sh.VOLUME] = float(np.exp(rng.uniform(*np.log(volume_range_ml))))
        try:
            out.append(sh.complete_features(model, values))
        except RadSynthError:   # a draw outside a ratio's definition (e.g. flatness > elongation): redraw
            continue
    if len(out) < n:
        raise RadSynthError("Could not draw valid shape requests from the model's training distribution.")
    return out


def raw_features(cond: dict[str, float]) -> np.ndarray:
    """Conditioning features + volume → the pyradiomics raw shape features they describe (mm, mm², mm³)."""
    v = cond[sh.VOLUME] * 1000.0
    row = [cond[n] for n in RATIOS] + [cond[f"{n}/V^(1/3)"] * v ** (1 / 3) for n in LENGTHS]
    return np.array(row + [cond["shape_SurfaceArea/V^(2/3)"] * v ** (2 / 3), v])


def measure(model: sh.ShapeModel, request: dict[str, float], seed: int, n: int) -> list[dict[str, float]]:
    """Conditioning features + volume of n generated masks, each scaled to the requested volume."""
    out = []
    for mask32 in sh.generate_shape(model, request, seed=seed, n=n):
        mask, voxel = sh.scale_to_volume(mask32, request[sh.VOLUME])
        out.append(sh.conditioning_features(fast_shape_features(mask, (voxel,) * 3)))
    return out


def _model_normalize(model: sh.ShapeModel) -> fd.Normalize:
    mean, std = model.normalizer.mean, model.normalizer.std
    return lambda x: (np.asarray(x, dtype=np.float64) - mean) / std


def evaluate_shape(model: sh.ShapeModel, n_targets: int = 40, seeds: int = 2, rng: Optional[np.random.Generator] = None,
                   out: Optional[Path] = None, sweeps: bool = True, log: Log = lambda s: None) -> dict:
    """Fidelity report of the shape model over ``n_targets`` random requests × ``seeds`` noise draws."""
    rng = rng or np.random.default_rng(0)
    t0 = time.perf_counter()
    targets = draw_targets(model, n_targets, rng)
    cond_names = list(model.names)
    req_cond, ach_cond, req_raw, ach_raw, failures = [], [], [], [], 0
    for t, request in enumerate(targets):
        try:
            achieved = measure(model, request, seed=1000 * t, n=seeds)
        except RadSynthError:
            failures += seeds
            continue
        for a in achieved:
            req_cond.append([request[n] for n in cond_names] + [request[sh.VOLUME]])
            ach_cond.append([a[n] for n in cond_names] + [a[sh.VOLUME]])
            req_raw.append(raw_features(request))
            ach_raw.append(raw_features(a))
        if (t + 1) % 10 == 0:
            log(f"shape: {t + 1}/{n_targets} targets")
    if len(req_cond) < 3:
        raise RadSynthError("The shape model produced too few masks to evaluate.")
    t_gen = time.perf_counter() - t0
    req_cond, ach_cond = np.array(req_cond), np.array(ach_cond)
    names = cond_names + [sh.VOLUME]
    normalize = _model_normalize(model)
    conditioning = fd.fidelity(req_cond[:, :-1], ach_cond[:, :-1], cond_names, rng, normalize=normalize)
    raw = fd.fidelity(np.array(req_raw), np.array(ach_raw), list(RAW_NAMES), rng, exclude=("shape_MeshVolume",))
    vol_err = np.abs(ach_cond[:, -1] / req_cond[:, -1] - 1)
    report = {
        "disclaimer": fd.DISCLAIMER,
        "model": {k: model.card.get(k) for k in ("name", "version", "demo", "sha256")},
        "protocol": {"targets": n_targets, "seeds_per_target": seeds, "samples": int(len(req_cond)),
                     "failed_samples": failures, "volume_range_ml": VOLUME_RANGE_ML, "slider_range_sd": RANGE_SD,
                     "normalized_conditioning": "model training normalizer (z-score)",
                     "normalized_raw": "z-score by the requested samples' mean and sd"},
        "conditioning": conditioning,
        "raw_pyradiomics": raw,
        "volume": {"spearman": fd.slider_monotonicity(req_cond[:, -1], ach_cond[:, -1]),
                   "median_abs_rel_error": float(np.median(vol_err)), "max_abs_rel_error": float(vol_err.max()),
                   "note": "met by scaling the voxel size, not learned"},
        "timings_s": {"generate_and_measure": round(t_gen, 2), "per_sample": round(t_gen / len(req_cond), 4)},
    }
    if out is not None:
        out = Path(out)
        panels = [(n, req_cond[:, names.index(n)], ach_cond[:, names.index(n)]) for n in sh.SLIDER_FEATURES]
        fd.scatter_plot(out / "shape_scatter.png", panels, "Shape: requested vs achieved (slider features)")
        fd.bar_plot(out / "shape_per_feature.png", conditioning,
                    "Shape: per-feature Spearman (conditioning features) vs shuffled condition")
    if sweeps:
        report["sliders"] = shape_sweeps(model, seeds=max(seeds, 3), out=out)
    report["timings_s"]["total"] = round(time.perf_counter() - t0, 2)
    return report


def _sweep_values(model: sh.ShapeModel, name: str, k: int) -> np.ndarray:
    if name == sh.VOLUME:
        return np.exp(np.linspace(*np.log(VOLUME_RANGE_ML), k))
    i = list(model.names).index(name)
    z_sd = np.sqrt(model.gauss_cov[i, i])
    z = model.gauss_mean[i] + np.linspace(-RANGE_SD, RANGE_SD, k) * z_sd
    return np.clip(model.normalizer.mean[i] + z * model.normalizer.std[i], 0.05, 1.0)


def shape_sweeps(model: sh.ShapeModel, sliders: Sequence[str] = sh.SLIDER_FEATURES, k: int = 7, seeds: int = 3,
                 out: Optional[Path] = None) -> dict:
    """Move one slider over its training range (others conditional means, volume SWEEP_VOLUME_ML) → Spearman of
    the achieved value, pooled over seeds and per seed."""
    result = {}
    for name in sliders:
        t0 = time.perf_counter()
        values, requested, achieved = _sweep_values(model, name, k), [], []
        for v in values:
            fixed = {name: float(v)} if name == sh.VOLUME else {name: float(v), sh.VOLUME: SWEEP_VOLUME_ML}
            try:
                rows = measure(model, sh.complete_features(model, fixed), seed=0, n=seeds)
            except RadSynthError:
                rows = [{name: float("nan")}] * seeds
            requested.append(float(v))
            achieved.append([r[name] for r in rows])
        ach = np.array(achieved)
        per_seed = [fd.slider_monotonicity(values, ach[:, s]) for s in range(seeds)]
        result[name] = {"values": [float(v) for v in values], "achieved": ach.tolist(),
                        "spearman": fd.slider_monotonicity(np.repeat(values, seeds), ach.ravel()),
                        "spearman_per_seed_mean": float(np.nanmean(per_seed)),
                        "seconds": round(time.perf_counter() - t0, 2)}
    if out is not None:
        panels = [(f"{n} sweep", np.repeat(r["values"], seeds), np.ravel(r["achieved"])) for n, r in result.items()]
        fd.scatter_plot(Path(out) / "shape_sliders.png", panels, "Shape sliders: one slider moved, others filled")
    return result
