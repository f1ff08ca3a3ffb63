"""Completing a partly-set feature vector so that it stays in the training distribution.

A user sets a few features (the sliders); a model is conditioned on all of them. Setting one feature and leaving
its correlated neighbours where they were describes a texture or shape no training sample had (raising the mean
intensity without moving the percentiles, say). The unset features therefore take the conditional mean of a
Gaussian fitted to the training features, given the set ones. With a source vector (a preset, a measured tumour)
as the Gaussian's centre, unchanged sliders give back exactly the source, and a moved slider carries its
correlated neighbours along by the training regression.

All vectors are in the model's normalized (z-score) space. Filled values are kept inside the range the training
rows spanned: a linear regression extrapolates past physical limits (a negative variance, say) for far requests.
"""

from __future__ import annotations

from typing import Mapping, NamedTuple, Optional

import numpy as np

from .errors import ModelError

#: ridge on the set block: near-collinear features (Sphericity vs SurfaceArea/V^(2/3), Mean vs Median) make it
#: near-singular, and the fill must not explode along such a direction
RIDGE = 1e-3


class Gaussian(NamedTuple):
    mean: np.ndarray
    cov: np.ndarray
    low: np.ndarray     # per-feature range of the training rows (−inf / inf where a card does not say)
    high: np.ndarray


def fit_gaussian(rows: np.ndarray) -> dict:
    """Mean, covariance and range of training feature rows (n × d, normalized), as stored in a model card."""
    rows = np.asarray(rows, dtype=np.float64)
    rows = rows[np.isfinite(rows).all(axis=1)]
    if len(rows) < 2:
        raise ModelError("Fitting the feature Gaussian needs at least two complete training rows.")
    return {"mean": np.round(rows.mean(0), 5).tolist(), "cov": np.round(np.cov(rows.T), 5).tolist(),
            "low": np.round(rows.min(0), 5).tolist(), "high": np.round(rows.max(0), 5).tolist()}


def gaussian_from_card(card: Mapping, n: int) -> Gaussian:
    """The card's ``gaussian`` entry, checked against the number of features ``n``."""
    try:
        entry = card["gaussian"]
        mean = np.asarray(entry["mean"], dtype=np.float64)
        cov = np.asarray(entry["cov"], dtype=np.float64)
        low = np.asarray(entry.get("low", [-np.inf] * n), dtype=np.float64)
        high = np.asarray(entry.get("high", [np.inf] * n), dtype=np.float64)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ModelError(f"The model card's feature Gaussian is missing or unreadable ({exc!r}).") from exc
    if mean.shape != (n,) or cov.shape != (n, n) or low.shape != (n,) or high.shape != (n,) \
            or not np.all(np.isfinite(cov)):
        raise ModelError(f"The model card's feature Gaussian does not match its {n} features.")
    return Gaussian(mean, cov, low, high)


def conditional_fill(center: np.ndarray, cov: np.ndarray, fixed: Mapping[int, float],
                     bounds: Optional[tuple[np.ndarray, np.ndarray]] = None) -> np.ndarray:
    """``center`` with the entries in ``fixed`` set and every other entry moved to the conditional mean (kept
    within ``bounds`` = (low, high) when given)."""
    x = np.asarray(center, dtype=np.float64).copy()
    known = sorted(fixed)
    if not known:
        return x
    unknown = [i for i in range(len(x)) if i not in fixed]
    values = np.array([fixed[i] for i in known], dtype=np.float64)
    block = cov[np.ix_(known, known)] + RIDGE * np.eye(len(known))
    x[unknown] = x[unknown] + cov[np.ix_(unknown, known)] @ np.linalg.solve(block, values - x[known])
    if bounds is not None:
        x[unknown] = np.clip(x[unknown], bounds[0][unknown], bounds[1][unknown])
    x[known] = values
    return x

