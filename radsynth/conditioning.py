"""Completing a partly-set feature vector so that it stays in the training distribution.

A user sets a few features (the sliders); a model is conditioned on all of them. Setting one feature and leaving
its correlated neighbours where they were describes a texture or shape no training sample had (raising the mean
intensity without moving the percentiles, say). The unset features therefore take the conditional mean of a
Gaussian fitted to the training features, given the set ones. With a source vector (a preset, a measured tumour)
as the Gaussian's centre, unchanged sliders give back exactly the source, and a moved slider carries its
correlated neighbours along by the training regression.

All vectors are in the model's normalized (z-score) space.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from .errors import ModelError

#: ridge on the set block: near-collinear features (Sphericity vs SurfaceArea/V^(2/3), Mean vs Median) make it
#: near-singular, and the fill must not explode along such a direction
RIDGE = 1e-3


def fit_gaussian(rows: np.ndarray) -> dict:
    """Mean and covariance of training feature rows (n × d, normalized), as stored in a model card."""
    rows = np.asarray(rows, dtype=np.float64)
    rows = rows[np.isfinite(rows).all(axis=1)]
    if len(rows) < 2:
        raise ModelError("Fitting the feature Gaussian needs at least two complete training rows.")
    return {"mean": np.round(rows.mean(0), 5).tolist(), "cov": np.round(np.cov(rows.T), 5).tolist()}


def gaussian_from_card(card: Mapping, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(mean, cov) from a card's ``gaussian`` entry, checked against the number of features ``n``."""
    try:
        mean = np.asarray(card["gaussian"]["mean"], dtype=np.float64)
        cov = np.asarray(card["gaussian"]["cov"], dtype=np.float64)
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelError(f"The model card's feature Gaussian is missing or unreadable ({exc!r}).") from exc
    if mean.shape != (n,) or cov.shape != (n, n) or not np.all(np.isfinite(cov)):
        raise ModelError(f"The model card's feature Gaussian does not match its {n} features.")
    return mean, cov


def conditional_fill(center: np.ndarray, cov: np.ndarray, fixed: Mapping[int, float]) -> np.ndarray:
    """``center`` with the entries in ``fixed`` set and every other entry moved to the conditional mean."""
    x = np.asarray(center, dtype=np.float64).copy()
    known = sorted(fixed)
    if not known:
        return x
    unknown = [i for i in range(len(x)) if i not in fixed]
    values = np.array([fixed[i] for i in known], dtype=np.float64)
    block = cov[np.ix_(known, known)] + RIDGE * np.eye(len(known))
    x[unknown] = x[unknown] + cov[np.ix_(unknown, known)] @ np.linalg.solve(block, values - x[known])
    x[known] = values
    return x

