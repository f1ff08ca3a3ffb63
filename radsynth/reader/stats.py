"""Statistics of a visual Turing test, written out so that each one can be checked against a hand computation.

Positive = synthetic throughout: sensitivity is the share of synthetic cases called synthetic, specificity the
share of real cases called real. The ROC analysis uses one signed rating per read,
``rating = +confidence`` when the reader answered "synthetic" and ``-confidence`` when "real" (so -5 … -1, 1 … 5:
a 10-point ordinal scale from "certainly real" to "certainly synthetic"); the AUC is the Mann–Whitney probability
that a synthetic case gets a higher rating than a real one, ties counting one half.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np
from scipy import stats as sps


def signed_rating(label: str, confidence: int) -> int:
    return int(confidence) if label == "synthetic" else -int(confidence)


# -- detection ----------------------------------------------------------------------------------------------------
def confusion(truth: Sequence[int], called: Sequence[int]) -> dict[str, int]:
    """Counts with 1 = synthetic: tp (synthetic called synthetic), fn, tn (real called real), fp."""
    t, c = np.asarray(truth, dtype=int), np.asarray(called, dtype=int)
    return {"tp": int(np.sum((t == 1) & (c == 1))), "fn": int(np.sum((t == 1) & (c == 0))),
            "tn": int(np.sum((t == 0) & (c == 0))), "fp": int(np.sum((t == 0) & (c == 1)))}


def ratio(num: int, den: int) -> Optional[float]:
    return num / den if den else None


def binomial(correct: int, n: int, p: float = 0.5) -> dict[str, Optional[float]]:
    """Exact two-sided binomial test of the number of correct calls against chance, with the Clopper–Pearson 95 %
    interval of the accuracy. Two-sided, because readers who systematically take synthetic for real also differ
    from chance."""
    if n == 0:
        return {"p_value": None, "ci_low": None, "ci_high": None}
    test = sps.binomtest(int(correct), int(n), p, alternative="two-sided")
    ci = test.proportion_ci(confidence_level=0.95, method="exact")
    return {"p_value": float(test.pvalue), "ci_low": float(ci.low), "ci_high": float(ci.high)}


# -- ROC ----------------------------------------------------------------------------------------------------------
def auc(positive: Sequence[float], negative: Sequence[float]) -> Optional[float]:
    """Mann–Whitney AUC: P(rating of a synthetic case > rating of a real case) + 0.5 P(equal)."""
    pos, neg = np.asarray(positive, dtype=float), np.asarray(negative, dtype=float)
    if pos.size == 0 or neg.size == 0:
        return None
    greater = (pos[:, None] > neg[None, :]).sum()
    ties = (pos[:, None] == neg[None, :]).sum()
    return float((greater + 0.5 * ties) / (pos.size * neg.size))


def _auc_batch(pos: np.ndarray, neg: np.ndarray) -> np.ndarray:
    """AUC of each row: pos (B, n1), neg (B, n0)."""
    diff = pos[:, :, None] - neg[:, None, :]
    return ((diff > 0).sum(axis=(1, 2)) + 0.5 * (diff == 0).sum(axis=(1, 2))) / (pos.shape[1] * neg.shape[1])


def roc_points(positive: Sequence[float], negative: Sequence[float]) -> tuple[list[float], list[float]]:
    """Empirical ROC (false positive rate, true positive rate), one point per rating threshold, from (0,0) to (1,1)."""
    pos, neg = np.asarray(positive, dtype=float), np.asarray(negative, dtype=float)
    thresholds = np.unique(np.concatenate([pos, neg]))[::-1]
    fpr, tpr = [0.0], [0.0]
    for t in thresholds:
        fpr.append(float(np.mean(neg >= t)) if neg.size else 0.0)
        tpr.append(float(np.mean(pos >= t)) if pos.size else 0.0)
    return fpr, tpr


def bootstrap_auc(positive: Sequence[float], negative: Sequence[float], n_boot: int = 2000,
                  seed: int = 0) -> tuple[Optional[float], Optional[float]]:
    """95 % percentile interval of the AUC, resampling synthetic and real cases separately (stratified), so every
    resample keeps the study's case mix."""
    pos, neg = np.asarray(positive, dtype=float), np.asarray(negative, dtype=float)
    if pos.size == 0 or neg.size == 0:
        return None, None
    rng = np.random.default_rng(seed)
    values = np.empty(n_boot)
    chunk = max(1, 4_000_000 // max(1, pos.size * neg.size))
    for start in range(0, n_boot, chunk):
        b = min(chunk, n_boot - start)
        values[start:start + b] = _auc_batch(pos[rng.integers(0, pos.size, (b, pos.size))],
                                             neg[rng.integers(0, neg.size, (b, neg.size))])
    lo, hi = np.percentile(values, [2.5, 97.5])
    return float(lo), float(hi)


def reader_averaged_auc(ratings: np.ndarray, truth: np.ndarray) -> Optional[float]:
    """Mean over readers of each reader's AUC; ``ratings`` is (readers, cases) with NaN for cases not read."""
    values = [auc(r[(truth == 1) & ~np.isnan(r)], r[(truth == 0) & ~np.isnan(r)]) for r in ratings]
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def bootstrap_reader_averaged_auc(ratings: np.ndarray, truth: np.ndarray, n_boot: int = 2000,
                                  seed: int = 0) -> tuple[Optional[float], Optional[float]]:
    """95 % percentile interval of the reader-averaged AUC, resampling readers and (stratified) cases, so that the
    interval covers both reader and case variability (a two-way bootstrap)."""
    pos_idx, neg_idx = np.flatnonzero(truth == 1), np.flatnonzero(truth == 0)
    if pos_idx.size == 0 or neg_idx.size == 0 or ratings.shape[0] == 0:
        return None, None
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(n_boot):
        readers = rng.integers(0, ratings.shape[0], ratings.shape[0])
        cases = np.concatenate([rng.choice(pos_idx, pos_idx.size), rng.choice(neg_idx, neg_idx.size)])
        sample = ratings[readers][:, cases]
        value = reader_averaged_auc(sample, truth[cases])
        if value is not None:
            values.append(value)
    if not values:
        return None, None
    lo, hi = np.percentile(values, [2.5, 97.5])
    return float(lo), float(hi)


# -- agreement ----------------------------------------------------------------------------------------------------
def cohen_kappa(a: Sequence, b: Sequence, categories: Optional[Sequence] = None,
                weights: Optional[str] = None) -> Optional[float]:
    """Cohen's κ of two readers over the same cases: κ = 1 − Σ w·O / Σ w·E, with O the observed and E the
    chance-expected (product of marginals) joint proportions; w = 1 off the diagonal (unweighted), |i − j|
    (linear) or (i − j)² (quadratic) for ordinal categories in the given order. None when chance agreement is
    complete (both readers used a single category)."""
    if len(a) != len(b):
        raise ValueError("both readers must rate the same cases")
    if not len(a):
        return None
    cats = list(categories) if categories is not None else sorted(set(a) | set(b))
    index = {c: i for i, c in enumerate(cats)}
    k = len(cats)
    observed = np.zeros((k, k))
    for x, y in zip(a, b):
        observed[index[x], index[y]] += 1
    observed /= observed.sum()
    expected = np.outer(observed.sum(axis=1), observed.sum(axis=0))
    i, j = np.indices((k, k))
    if weights is None:
        w = (i != j).astype(float)
    elif weights == "linear":
        w = np.abs(i - j).astype(float)
    elif weights == "quadratic":
        w = ((i - j) ** 2).astype(float)
    else:
        raise ValueError(f"unknown weights {weights!r}")
    denominator = float((w * expected).sum())
    if denominator == 0:
        return None
    return float(1 - (w * observed).sum() / denominator)


def fleiss_table(ratings: Sequence[Sequence], categories: Sequence) -> np.ndarray:
    """(cases, categories) counts from per-case lists of the readers' ratings."""
    index = {c: i for i, c in enumerate(categories)}
    table = np.zeros((len(ratings), len(categories)), dtype=int)
    for n, case in enumerate(ratings):
        for value in case:
            table[n, index[value]] += 1
    return table


def fleiss_kappa(table: np.ndarray) -> Optional[float]:
    """Fleiss' κ from a (cases, categories) table of counts, every case rated by the same number m of readers:
    P_i = (Σ_j n_ij² − m) / (m (m − 1)), p_j = Σ_i n_ij / (N m),
    κ = (mean P_i − Σ p_j²) / (1 − Σ p_j²)."""
    table = np.asarray(table, dtype=float)
    if table.size == 0:
        return None
    m = table.sum(axis=1)
    if not np.all(m == m[0]) or m[0] < 2:
        raise ValueError("Fleiss' kappa needs the same number (>= 2) of ratings per case")
    m = m[0]
    p_i = ((table ** 2).sum(axis=1) - m) / (m * (m - 1))
    p_j = table.sum(axis=0) / table.sum()
    p_e = float((p_j ** 2).sum())
    if math.isclose(p_e, 1.0):
        return None
    return float((p_i.mean() - p_e) / (1 - p_e))
