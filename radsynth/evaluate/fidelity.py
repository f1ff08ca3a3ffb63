"""Feature-fidelity statistics: does the generated tumour have the radiomics features it was asked for?

Two protocols, because they answer different questions:

* **per feature, across samples** (the meaningful one): for each feature, correlate the requested values of all
  samples with the achieved values. A model that ignores its condition scores ~0 whatever the feature scales.
* **per sample, across the feature vector** (the paper's Table 2/3, as far as its figures show): correlate one
  sample's requested vector with its achieved vector, then average over samples. On raw features the vector mixes
  mm³, mm and unitless ratios, so any two plausible tumours correlate highly; it is reported on raw *and*
  normalized features so the gap shows how much the scale differences alone contribute.

Every statistic is also computed with the requested rows permuted across samples (``shuffled_baseline``): what a
model that ignored its condition, yet produced plausible tumours, would score.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Callable, Mapping, Optional, Sequence

import numpy as np
from scipy import stats

DISCLAIMER = "Demo-model numbers are not comparable to the paper's models trained on hundreds of patients."
MIN_PAIRS = 3

Normalize = Callable[[np.ndarray], np.ndarray]


def _pair(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, Optional[str]]:
    """Finite pairs of two columns, and why a correlation is undefined on them (None when it is defined)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    ok = np.isfinite(a) & np.isfinite(b)
    a, b = a[ok], b[ok]
    if len(a) < MIN_PAIRS:
        return a, b, f"fewer than {MIN_PAIRS} finite pairs"
    # ptp, not std == 0: a column of identical floats can have a tiny non-zero std from rounding
    if np.ptp(a) == 0:
        return a, b, "requested values are constant"
    if np.ptp(b) == 0:
        return a, b, "achieved values are constant"
    return a, b, None


def _corr(a, b) -> tuple[float, float, Optional[str]]:
    a, b, note = _pair(a, b)
    if note:
        return float("nan"), float("nan"), note
    return float(stats.pearsonr(a, b)[0]), float(stats.spearmanr(a, b)[0]), None


def per_feature_correlation(requested: np.ndarray, achieved: np.ndarray,
                            names: Optional[Sequence[str]] = None) -> dict[str, dict]:
    """name → {pearson, spearman[, note]}: correlation of each feature column across samples (rows)."""
    requested, achieved = np.atleast_2d(requested), np.atleast_2d(achieved)
    if requested.shape != achieved.shape:
        raise ValueError(f"requested {requested.shape} and achieved {achieved.shape} differ in shape")
    names = list(names) if names is not None else [f"f{i}" for i in range(requested.shape[1])]
    out = {}
    for j, name in enumerate(names):
        p, s, note = _corr(requested[:, j], achieved[:, j])
        out[name] = {"pearson": p, "spearman": s, **({"note": note} if note else {})}
    return out


def summarize_features(table: Mapping[str, Mapping[str, float]],
                       exclude: Sequence[str] = ()) -> dict[str, float]:
    """Medians over features (NaN rows left out and counted) of a ``per_feature_correlation`` table."""
    rows = [v for k, v in table.items() if k not in exclude]
    sp = np.array([r["spearman"] for r in rows], dtype=np.float64)
    pe = np.array([r["pearson"] for r in rows], dtype=np.float64)
    ok = np.isfinite(sp)
    return {"median_spearman": float(np.median(sp[ok])) if ok.any() else float("nan"),
            "median_pearson": float(np.median(pe[np.isfinite(pe)])) if np.isfinite(pe).any() else float("nan"),
            "fraction_spearman_above_0.5": float(np.mean(sp[ok] > 0.5)) if ok.any() else float("nan"),
            "n_features": int(len(rows)), "n_undefined": int((~ok).sum())}


def zscore_by(reference: np.ndarray) -> Normalize:
    """Column z-score with the reference rows' mean and sd: the stand-in normalizer when the model has none."""
    ref = np.asarray(reference, dtype=np.float64)
    mean = np.nanmean(ref, axis=0)
    sd = np.nanstd(ref, axis=0)
    sd = np.where(sd > 0, sd, 1.0)
    return lambda x: (np.asarray(x, dtype=np.float64) - mean) / sd


def _per_sample(requested: np.ndarray, achieved: np.ndarray) -> dict:
    rows = [_corr(r, a) for r, a in zip(requested, achieved)]
    out = {"n_samples": len(rows), "n_undefined": sum(1 for r in rows if r[2])}
    for i, key in enumerate(("pearson", "spearman")):
        v = np.array([r[i] for r in rows], dtype=np.float64)
        v = v[np.isfinite(v)]
        out[key] = {"mean": float(v.mean()) if v.size else float("nan"),
                    "sd": float(v.std(ddof=1)) if v.size > 1 else float("nan")}
    return out


def per_sample_correlation(requested: np.ndarray, achieved: np.ndarray,
                           normalize: Optional[Normalize] = None) -> dict[str, dict]:
    """The paper's protocol (correlation across each sample's feature vector, mean ± sd over samples) on raw
    features and on normalized ones (``normalize``; default: z-score by the requested rows)."""
    requested, achieved = np.atleast_2d(requested), np.atleast_2d(achieved)
    normalize = normalize or zscore_by(requested)
    return {"raw": _per_sample(requested, achieved),
            "normalized": _per_sample(normalize(requested), normalize(achieved))}


def abs_error(requested: np.ndarray, achieved: np.ndarray, normalize: Normalize) -> float:
    """Mean over samples of the median absolute difference between normalized achieved and requested features:
    how far results land from their requests (0 = exactly), which no correlation says (a model can be perfectly
    correlated with its requests and 200 HU off)."""
    diff = np.abs(normalize(np.atleast_2d(achieved)) - normalize(np.atleast_2d(requested)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)   # all-NaN rows: features undefined for that sample
        return float(np.nanmean(np.nanmedian(diff, axis=1)))


def _derangement(n: int, rng: np.random.Generator) -> np.ndarray:
    """A random permutation with no fixed point: a fixed point would hand a sample its own request back."""
    order = rng.permutation(n)
    out = np.empty(n, dtype=int)
    out[order] = order[np.roll(np.arange(n), -1)]
    return out


def shuffled_baseline(requested: np.ndarray, achieved: np.ndarray, rng: np.random.Generator,
                      normalize: Optional[Normalize] = None, names: Optional[Sequence[str]] = None,
                      n_perm: int = 20, exclude: Sequence[str] = ()) -> dict:
    """The statistics above with the requested rows permuted across samples, averaged over ``n_perm``
    permutations: the score of a model that ignores its condition but draws from the same population."""
    requested, achieved = np.atleast_2d(requested), np.atleast_2d(achieved)
    if len(requested) < 2:
        raise ValueError("a shuffled baseline needs at least two samples")
    normalize = normalize or zscore_by(requested)   # fixed before shuffling: the scale is not what is permuted
    names = list(names) if names is not None else [f"f{i}" for i in range(requested.shape[1])]
    sp_runs, pe_runs, sample_runs, err_runs = [], [], [], []
    for _ in range(n_perm):
        shuffled = requested[_derangement(len(requested), rng)]
        err_runs.append(abs_error(shuffled, achieved, normalize))
        table = per_feature_correlation(shuffled, achieved, names)
        sp_runs.append([table[n]["spearman"] for n in names])
        pe_runs.append([table[n]["pearson"] for n in names])
        sample_runs.append(per_sample_correlation(shuffled, achieved, normalize))
    sp, pe = np.array(sp_runs), np.array(pe_runs)
    keep = [i for i, n in enumerate(names) if n not in exclude]
    # constant columns stay NaN in every permutation; numpy's all-NaN warnings would only repeat the table's notes
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        mean_sp = np.nanmean(sp, axis=0)
        run_medians = np.nanmedian(sp[:, keep], axis=1)
        out = {"n_permutations": n_perm,
               "per_feature_spearman": {n: float(mean_sp[i]) for i, n in enumerate(names)},
               "median_spearman": float(np.nanmean(run_medians)),
               "median_spearman_sd": float(np.nanstd(run_medians)),
               "median_pearson": float(np.nanmean(np.nanmedian(pe[:, keep], axis=1))),
               "abs_error": float(np.mean(err_runs)),
               "per_sample": {p: {k: float(np.nanmean([r[p][k]["mean"] for r in sample_runs]))
                                  for k in ("pearson", "spearman")} for p in ("raw", "normalized")}}
    return out


def slider_monotonicity(values: Sequence[float], achieved: Sequence[float]) -> float:
    """Spearman ρ of achieved against requested slider values (1 = the output moves with the slider)."""
    return _corr(values, achieved)[1]


def fidelity(requested: np.ndarray, achieved: np.ndarray, names: Sequence[str], rng: np.random.Generator,
             normalize: Optional[Normalize] = None, n_perm: int = 20, exclude: Sequence[str] = ()) -> dict:
    """Both protocols and the shuffled baseline in one report section; ``exclude`` leaves features out of the
    per-feature medians (e.g. one met exactly by construction) but keeps them in the table."""
    table = per_feature_correlation(requested, achieved, names)
    return {"n_samples": int(len(requested)), "n_features": len(names),
            "per_feature": table, "per_feature_summary": summarize_features(table, exclude),
            "per_sample": per_sample_correlation(requested, achieved, normalize),
            "abs_error": abs_error(requested, achieved, normalize or zscore_by(requested)),
            "shuffled": shuffled_baseline(requested, achieved, rng, normalize, names, n_perm, exclude)}


def summary_lines(section: Mapping) -> list[str]:
    """A short table: the per-feature medians and the two per-sample protocols, each next to its baseline."""
    f, s, sh = section["per_feature_summary"], section["per_sample"], section["shuffled"]
    rows = [("per-feature Spearman, median", f["median_spearman"], sh["median_spearman"]),
            ("per-feature Pearson, median", f["median_pearson"], sh["median_pearson"])]
    for p in ("raw", "normalized"):
        for k in ("pearson", "spearman"):
            rows.append((f"per-sample {k} ({p}), mean", s[p][k]["mean"], sh["per_sample"][p][k]))
    rows.append(("median |achieved − requested| (z)", section["abs_error"], sh["abs_error"]))
    lines = [f"  {'statistic':<38}{'model':>8}{'shuffled':>10}"]
    lines += [f"  {name:<38}{v:>8.3f}{b:>10.3f}" for name, v, b in rows]
    return lines


# -- plots (matplotlib object API: no pyplot, so a host application's backend is left alone) ---------------------
def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def scatter_plot(path: Path, panels: Sequence[tuple[str, np.ndarray, np.ndarray]], title: str) -> Path:
    """Requested vs achieved, one panel per (label, requested, achieved), with the identity line and ρ."""
    cols = min(3, len(panels))
    rows = -(-len(panels) // cols)
    fig = _figure(4.0 * cols, 3.8 * rows + 0.6)
    for k, (label, req, ach) in enumerate(panels):
        ax = fig.add_subplot(rows, cols, k + 1)
        req, ach = np.asarray(req, dtype=float), np.asarray(ach, dtype=float)
        ax.scatter(req, ach, s=14, alpha=0.7)
        finite = np.concatenate([req[np.isfinite(req)], ach[np.isfinite(ach)]])
        if finite.size:
            lo, hi = finite.min(), finite.max()
            ax.plot([lo, hi], [lo, hi], color="grey", linewidth=1, linestyle="--")
        ax.set_title(f"{label}\nSpearman {slider_monotonicity(req, ach):.2f}", fontsize=9)
        ax.set_xlabel("requested", fontsize=8)
        ax.set_ylabel("achieved", fontsize=8)
        ax.tick_params(labelsize=7)
    fig.suptitle(f"{title}\n{DISCLAIMER}", fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return Path(path)


def bar_plot(path: Path, section: Mapping, title: str, max_features: int = 100) -> Path:
    """Per-feature Spearman of the model next to the shuffled-condition baseline, sorted by the model's ρ."""
    table, base = section["per_feature"], section["shuffled"]["per_feature_spearman"]
    names = sorted(table, key=lambda n: -np.nan_to_num(table[n]["spearman"], nan=-2.0))[:max_features]
    x = np.arange(len(names))
    fig = _figure(max(6.0, 0.16 * len(names) + 2.0), 4.8)
    ax = fig.add_subplot(1, 1, 1)
    ax.bar(x - 0.2, [table[n]["spearman"] for n in names], width=0.4, label="model")
    ax.bar(x + 0.2, [base[n] for n in names], width=0.4, label="shuffled condition", color="#bbbbbb")
    ax.axhline(0, color="black", linewidth=0.6)
    ax.set_xticks(x)
    ax.set_xticklabels([n.removeprefix("shape_") for n in names], rotation=90, fontsize=6)
    ax.set_ylabel("Spearman ρ, requested vs achieved")
    ax.set_ylim(-1, 1)
    ax.legend(fontsize=8)
    ax.set_title(f"{title}\n{DISCLAIMER}", fontsize=9)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return Path(path)
