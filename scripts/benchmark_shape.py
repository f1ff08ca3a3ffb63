"""Shape generator benchmark: slider-preview latency, generation time, and controllability sweeps.

python scripts/benchmark_shape.py [--model DIR] [--threads 1] [--json OUT]

Controllability is reported per feature as Spearman ρ between requested and achieved values:
  * slider sweeps: one slider over 8 values × 3 seeds, the other features filled by ``complete_features``;
  * all conditioning features: 48 requests drawn from the model's training Gaussian, one seed each.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np
import torch
from scipy.stats import spearmanr

from radsynth.errors import RadSynthError
from radsynth.pipelines import shape as sh
from radsynth.shape_features import fast_shape_features

SWEEPS = {
    "volume_ml": np.geomspace(0.3, 80.0, 8),
    "shape_Sphericity": np.linspace(0.62, 0.9, 8),
    "shape_Elongation": np.linspace(0.4, 0.95, 8),
    "shape_Flatness": np.linspace(0.25, 0.85, 8),
}
BASE = {"volume_ml": 5.0}


def _ms(fn, repeat: int) -> float:
    times = []
    for i in range(repeat):
        t = time.perf_counter()
        fn(i)
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def sweep(model: sh.ShapeModel, name: str, values) -> dict[str, float]:
    """Spearman ρ and mean absolute error (achieved − requested) over one slider sweep."""
    requested, achieved = [], []
    for v in values:
        for seed in range(3):
            _, measured = sh.preview(model, dict(BASE, **{name: float(v)}), seed=seed)
            requested.append(v)
            achieved.append(float(f"{measured[name]:.6g}"))   # float noise must not break ties in the ranks
    req, ach = np.array(requested), np.array(achieved)
    return {"spearman": round(float(spearmanr(req, ach)[0]), 3), "mae": round(float(np.abs(ach - req).mean()), 4),
            "achieved_range": [round(float(ach.min()), 3), round(float(ach.max()), 3)]}


def gaussian_requests(model: sh.ShapeModel, n: int, seed: int) -> dict[str, float]:
    """Per-feature ρ over requests drawn from the training Gaussian (so all features vary jointly)."""
    rng = np.random.default_rng(seed)
    draws = rng.multivariate_normal(model.gauss_mean, model.gauss_cov, size=n)
    requested, achieved = [], []
    for i, x in enumerate(draws):
        feats = model.normalizer.denormalize(np.clip(x, -2.5, 2.5))
        try:
            full = sh.complete_features(model, feats)
        except RadSynthError:       # a draw can violate flatness <= elongation; skip it
            continue
        mask = sh.generate_shape(model, full, seed=i)[0]
        got = sh.conditioning_features(fast_shape_features(mask, (1.0, 1.0, 1.0)))
        requested.append([full[k] for k in sh.COND_FEATURES])
        achieved.append([got[k] for k in sh.COND_FEATURES])
    req, ach = np.array(requested), np.array(achieved)
    return {k: float(spearmanr(req[:, j], ach[:, j])[0]) for j, k in enumerate(sh.COND_FEATURES)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default=None, help="shape model folder (default: bundled demo)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", default=None, help="also write the results here")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    model = sh.load_shape_model(a.model, device="cpu")
    feats = {"volume_ml": 5.0, "shape_Sphericity": 0.8, "shape_Elongation": 0.75, "shape_Flatness": 0.6}
    sh.preview(model, feats, seed=0)   # warm-up: first call pays for lazy initialisation
    res = {"threads": torch.get_num_threads(), "model": model.card["name"]}
    res["preview_ms_median20"] = _ms(lambda i: sh.preview(model, feats, seed=i), 20)
    res["generate_1_ms_median20"] = _ms(lambda i: sh.generate_shape(model, feats, seed=i), 20)
    res["generate_8_ms_median5"] = _ms(lambda i: sh.generate_shape(model, feats, seed=i, n=8), 5)
    res["complete_features_ms"] = _ms(lambda i: sh.complete_features(model, feats), 20)
    res["slider_sweeps"] = {k: sweep(model, k, v) for k, v in SWEEPS.items()}
    res["gaussian_requests_spearman_n48"] = {k: round(v, 3) for k, v in gaussian_requests(model, 48, 0).items()}
    print(f"preview (generate + scale + shape features): {res['preview_ms_median20']:.1f} ms median of 20, "
          f"{res['threads']} thread(s)")
    print(f"generate_shape n=1: {res['generate_1_ms_median20']:.1f} ms; n=8: {res['generate_8_ms_median5']:.1f} ms")
    print("slider sweeps (8 values x 3 seeds): Spearman and mean |error| of achieved vs requested:")
    for k, v in res["slider_sweeps"].items():
        lo, hi = SWEEPS[k][0], SWEEPS[k][-1]
        print(f"  {k:40s} rho {v['spearman']:6.3f}  mae {v['mae']:.4f}  requested {lo:.3g}..{hi:.3g} -> "
              f"achieved {v['achieved_range'][0]:.3g}..{v['achieved_range'][1]:.3g}")
    print("requests drawn from the training Gaussian (48), Spearman requested vs achieved:")
    for k, v in res["gaussian_requests_spearman_n48"].items():
        print(f"  {k:40s} {v:6.3f}")
    if a.json:
        with open(a.json, "w") as fh:
            json.dump(res, fh, indent=1)


if __name__ == "__main__":
    main()
