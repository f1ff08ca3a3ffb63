"""Distribution metrics for generated CT, shared by ``radsynth evaluate inpaint|generate|generate-volume``.

All weight-free (FID, which needs a feature network, is in :mod:`radsynth.evaluate.fid`). Each metric states its
unit and what "no difference" scores:

* :func:`hu_distance` — Wasserstein-1 (earth mover's) distance in HU between two HU samples on a fixed binning
  (``HU_EDGES``: 10 HU bins over −1024…3071, the 12-bit CT range; values outside are clipped into the end bins),
  plus the Jensen–Shannon divergence (base 2, 0…1) of the same histograms. W1 reads as "how many HU the mass has to
  move"; JS says how much the shapes overlap regardless of distance. 0 for identical samples.
* :func:`frechet_distance` — Fréchet distance between Gaussian fits of two feature sets (the FID formula), on
  features z-scored by the *real* set's mean and SD, so it is unitless and each feature weighs the same. The
  covariances get a ridge (``RIDGE`` × I on the z-scale) so that fewer samples than features still give a finite,
  stable value; below ``MIN_FRECHET_SAMPLES`` per set it refuses. 0 for identical sets.
* :func:`ms_ssim_diversity` — mean MS-SSIM (MONAI ``MultiScaleSSIMMetric``) over all pairs of variants: 1 means the
  variants are identical, lower means more diverse (seed 000 Table 7 reports it this way). Small images get fewer
  scales and a smaller kernel (:func:`ms_ssim_settings`).
* :func:`mmd2` — unbiased squared maximum mean discrepancy with a Gaussian RBF kernel, bandwidth by the median
  heuristic on the pooled samples; :func:`batch_mmd2` averages it over random mini-batches (seed 000's bMMD²).
  ~0 (can be slightly negative: unbiased) for samples of one distribution.
* :func:`continuity` — slice continuity: how much a volume's axial slices jump from one to the next, the stripes
  seen in coronal and sagittal reformats (see its docstring); compared against the same score on real slices.
"""

from __future__ import annotations

import itertools
from typing import Optional, Sequence

import numpy as np

from ..errors import RadSynthError

#: the 12-bit CT range in 10 HU bins: the same edges for every histogram, so distances are comparable across runs
HU_RANGE = (-1024.0, 3071.0)
HU_BIN = 10.0
HU_EDGES = np.arange(HU_RANGE[0], HU_RANGE[1] + HU_BIN, HU_BIN)
MIN_HU_VOXELS = 50
#: ridge added to both covariances on the z-scale (1 = the real set's SD): keeps sqrtm finite when samples are few
RIDGE = 1e-3
MIN_FRECHET_SAMPLES = 4
#: percentiles of a slice's body voxels that make its intensity profile (continuity)
PROFILE_PERCENTILES = (10, 25, 50, 75, 90)
MIN_BODY_VOXELS = 20
MSSSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)   # Wang et al. 2003, the usual 5 scales


class MetricError(RadSynthError):
    """A metric cannot be computed on this input (too few samples, wrong shapes, nothing inside a region)."""


# ------------------------------------------------------------------------------------------------ HU histograms

def hu_histogram(values: np.ndarray) -> np.ndarray:
    """Counts of ``values`` (HU) on ``HU_EDGES``; values outside the range fall into the end bins."""
    v = np.clip(np.asarray(values, dtype=np.float64).ravel(), HU_RANGE[0], HU_RANGE[1])
    return np.histogram(v, HU_EDGES)[0].astype(np.float64)


def _check_hu(values: np.ndarray, what: str) -> np.ndarray:
    v = np.asarray(values, dtype=np.float64).ravel()
    v = v[np.isfinite(v)]
    if v.size < MIN_HU_VOXELS:
        raise MetricError(f"{what} has {v.size} voxels; an HU histogram distance needs at least {MIN_HU_VOXELS}.")
    return v


def hu_distance(real: np.ndarray, generated: np.ndarray) -> dict[str, float]:
    """{wasserstein_hu, js_divergence, mean_hu_real, mean_hu_generated, voxels_*} between two HU samples."""
    from scipy.spatial.distance import jensenshannon
    from scipy.stats import wasserstein_distance

    a, b = _check_hu(real, "The real region"), _check_hu(generated, "The generated region")
    ha, hb = hu_histogram(a), hu_histogram(b)
    centres = (HU_EDGES[:-1] + HU_EDGES[1:]) / 2
    return {"wasserstein_hu": float(wasserstein_distance(centres, centres, ha, hb)),
            "js_divergence": float(jensenshannon(ha, hb, base=2) ** 2),
            "mean_hu_real": float(a.mean()), "mean_hu_generated": float(b.mean()),
            "voxels_real": int(a.size), "voxels_generated": int(b.size)}


# ---------------------------------------------------------------------------------------------------- Fréchet

def _feature_matrix(x: np.ndarray, what: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise MetricError(f"{what} must be a (samples, features) table; got shape {x.shape}.")
    if len(x) < MIN_FRECHET_SAMPLES:
        raise MetricError(f"{what} has {len(x)} samples; a Fréchet distance needs at least {MIN_FRECHET_SAMPLES} "
                          "per set (and is only stable with more samples than features).")
    if not np.all(np.isfinite(x)):
        raise MetricError(f"{what} holds values that are not finite numbers.")
    return x


def zscore_on(reference: np.ndarray, *tables: np.ndarray) -> list[np.ndarray]:
    """``tables`` z-scored with the reference rows' mean and SD (constant reference columns: SD 1)."""
    ref = np.asarray(reference, dtype=np.float64)
    mean, sd = ref.mean(axis=0), ref.std(axis=0)
    sd = np.where(sd > 1e-12 * np.maximum(np.abs(mean), 1.0), sd, 1.0)
    return [(np.asarray(t, dtype=np.float64) - mean) / sd for t in tables]


def frechet_from_moments(mu1: np.ndarray, s1: np.ndarray, mu2: np.ndarray, s2: np.ndarray) -> float:
    """‖μ1 − μ2‖² + tr(Σ1 + Σ2 − 2 (Σ1 Σ2)^½), the FID formula; tiny imaginary parts from sqrtm are dropped."""
    from scipy import linalg

    covmean = linalg.sqrtm(s1 @ s2)
    covmean = np.real(covmean)
    value = float(np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2.0 * np.trace(covmean))
    return max(value, 0.0)


def frechet_distance(real: np.ndarray, generated: np.ndarray, normalize: bool = True,
                     ridge: float = RIDGE) -> float:
    """Fréchet distance of Gaussian fits to two (samples, features) tables, z-scored on ``real`` when
    ``normalize`` (the FID itself uses raw network features: ``normalize=False``)."""
    a, b = _feature_matrix(real, "The real feature set"), _feature_matrix(generated, "The generated feature set")
    if a.shape[1] != b.shape[1]:
        raise MetricError(f"The feature sets differ in width ({a.shape[1]} vs {b.shape[1]} features).")
    if normalize:
        a, b = zscore_on(a, a, b)
    eye = np.eye(a.shape[1]) * ridge
    return frechet_from_moments(a.mean(0), np.cov(a, rowvar=False) + eye, b.mean(0), np.cov(b, rowvar=False) + eye)


# --------------------------------------------------------------------------------------------------- MS-SSIM

def ms_ssim_settings(shape: Sequence[int]) -> tuple[int, tuple[float, ...]]:
    """(kernel size, scale weights) that MONAI's MS-SSIM accepts for images of ``shape`` (H, W): it needs
    min(H, W) > (kernel − 1) · 2^(scales − 1). The usual 7-pixel kernel and 5 scales need > 96 pixels; smaller images
    keep as many scales as fit (at least 2) with the 7-pixel kernel, then a 5- and a 3-pixel kernel; the kept
    weights are renormalised to sum to 1."""
    side = int(min(shape))
    for kernel in (7, 5, 3):
        for scales in range(len(MSSSIM_WEIGHTS), 1, -1):
            if side > (kernel - 1) * 2 ** (scales - 1):
                w = np.asarray(MSSSIM_WEIGHTS[:scales])
                return kernel, tuple(float(v) for v in w / w.sum())
    raise MetricError(f"Images of {tuple(shape)} pixels are too small for MS-SSIM (at least 5 × 5 are needed).")


def ms_ssim_diversity(images: np.ndarray, window: tuple[float, float]) -> dict[str, float]:
    """Mean and SD of MS-SSIM over all pairs of ``images`` (variants, H, W) — or (variants, slices, H, W), pairs
    compared slice by slice — after mapping ``window`` (HU) onto [0, 1] (clipped; data range 1). 1 = identical
    variants; lower = more diverse."""
    import torch
    from monai.metrics import MultiScaleSSIMMetric

    x = np.asarray(images, dtype=np.float32)
    if x.ndim == 3:
        x = x[:, None]
    if x.ndim != 4 or x.shape[0] < 2:
        raise MetricError(f"MS-SSIM diversity needs at least two variants of the same images; got shape {x.shape}.")
    lo, hi = (float(v) for v in window)
    if not hi > lo:
        raise MetricError(f"The MS-SSIM window {lo}..{hi} HU is empty.")
    x = np.clip((x - lo) / (hi - lo), 0.0, 1.0)
    kernel, weights = ms_ssim_settings(x.shape[-2:])
    metric = MultiScaleSSIMMetric(spatial_dims=2, data_range=1.0, kernel_size=kernel, weights=weights)
    values = [metric(torch.from_numpy(x[i])[:, None], torch.from_numpy(x[j])[:, None]).reshape(-1).numpy()
              for i, j in itertools.combinations(range(x.shape[0]), 2)]
    v = np.concatenate(values)
    return {"ms_ssim_mean": float(np.nanmean(v)), "ms_ssim_sd": float(np.nanstd(v)), "pairs": len(values),
            "kernel_size": kernel, "scales": len(weights), "window_hu": [lo, hi]}


# ------------------------------------------------------------------------------------------------------ MMD²

def _sq_dists(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    d = np.sum(a ** 2, 1)[:, None] + np.sum(b ** 2, 1)[None] - 2.0 * a @ b.T
    return np.maximum(d, 0.0)


def median_bandwidth(x: np.ndarray, y: np.ndarray) -> float:
    """Median pairwise Euclidean distance of the pooled samples (the median heuristic); 1 if it is 0."""
    z = np.concatenate([x, y])
    d = np.sqrt(_sq_dists(z, z))[np.triu_indices(len(z), 1)]
    med = float(np.median(d)) if d.size else 0.0
    return med if med > 0 else 1.0


def mmd2(x: np.ndarray, y: np.ndarray, bandwidth: Optional[float] = None) -> float:
    """Unbiased MMD² (Gretton et al. 2012, eq. 3) with k(a, b) = exp(−‖a − b‖² / (2 h²)); ``h`` by the median
    heuristic unless given."""
    x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    y = np.asarray(y, dtype=np.float64).reshape(len(y), -1)
    if len(x) < 2 or len(y) < 2:
        raise MetricError(f"MMD² needs at least two samples per set (got {len(x)} and {len(y)}).")
    if x.shape[1] != y.shape[1]:
        raise MetricError(f"The sample sets differ in width ({x.shape[1]} vs {y.shape[1]}).")
    h = median_bandwidth(x, y) if bandwidth is None else float(bandwidth)
    k = lambda a, b: np.exp(-_sq_dists(a, b) / (2 * h * h))   # noqa: E731
    kxx, kyy, kxy = k(x, x), k(y, y), k(x, y)
    m, n = len(x), len(y)
    return float((kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
                 - 2.0 * kxy.mean())


def batch_mmd2(x: np.ndarray, y: np.ndarray, batch: int = 16, batches: int = 20, seed: int = 0) -> dict[str, float]:
    """bMMD²: :func:`mmd2` over ``batches`` random mini-batches of ``batch`` samples per set, one bandwidth (median
    heuristic on all samples) for every batch; mean and SD."""
    x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    y = np.asarray(y, dtype=np.float64).reshape(len(y), -1)
    if len(x) < 2 or len(y) < 2:
        raise MetricError(f"bMMD² needs at least two samples per set (got {len(x)} and {len(y)}).")
    h = median_bandwidth(x, y)
    b = min(batch, len(x), len(y))
    rng = np.random.default_rng(seed)
    runs = [mmd2(x[rng.choice(len(x), b, replace=False)], y[rng.choice(len(y), b, replace=False)], h)
            for _ in range(batches)]
    return {"bmmd2_mean": float(np.mean(runs)), "bmmd2_sd": float(np.std(runs)), "batch": int(b),
            "batches": int(batches), "bandwidth": float(h), "kernel": "Gaussian RBF, median-heuristic bandwidth"}


# ------------------------------------------------------------------------------------------------ continuity

def slice_profiles(volume_hu: np.ndarray, body: np.ndarray, percentiles: Sequence[int] = PROFILE_PERCENTILES
                   ) -> np.ndarray:
    """(slices, len(percentiles)) HU percentiles of each axial slice's body voxels (NaN where too few)."""
    out = np.full((volume_hu.shape[0], len(percentiles)), np.nan)
    for k in range(volume_hu.shape[0]):
        v = volume_hu[k][body[k]]
        if v.size >= MIN_BODY_VOXELS:
            out[k] = np.percentile(v, percentiles)
    return out


def continuity(volume_hu: np.ndarray, body: np.ndarray, window: Optional[tuple[float, float]] = None
               ) -> dict[str, float]:
    """Inter-slice jumps of a (k, j, i) HU volume inside ``body`` (k = axial slices, in order):

    * ``voxel_jump_hu``: mean |x(k+1) − x(k)| over voxels in the body on both slices — what a reader sees as
      roughness in a coronal or sagittal reformat (anatomy that changes between slices counts too);
    * ``stripe_hu``: mean over slices and over the body's 10/25/50/75/90th HU percentiles of the *second*
      difference |p(k+1) − 2 p(k) + p(k−1)|. Anatomy drifts smoothly along the body axis, so its second difference
      is small; a slice brighter, darker or of other contrast than both neighbours (a stripe in the reformat) makes
      it large. This is the score IC-Net should lower.

    ``window`` clips HU first (e.g. a soft-tissue window, where contrast stripes show). Needs ≥ 3 slices with body.
    """
    x = np.asarray(volume_hu, dtype=np.float64)
    body = np.asarray(body, dtype=bool)
    if x.ndim != 3 or x.shape != body.shape:
        raise MetricError(f"Continuity needs a 3D volume and a body mask of the same shape; got {x.shape} and "
                          f"{body.shape}.")
    if window is not None:
        x = np.clip(x, *window)
    both = body[1:] & body[:-1]
    if both.sum() < MIN_BODY_VOXELS:
        raise MetricError("Continuity needs body voxels on adjacent slices; the body mask is (nearly) empty.")
    jump = float(np.abs(np.diff(x, axis=0))[both].mean())
    prof = slice_profiles(x, body)
    second = np.abs(prof[2:] - 2 * prof[1:-1] + prof[:-2])
    ok = np.isfinite(second).all(axis=1)
    if not ok.any():
        raise MetricError("Continuity needs at least three consecutive slices with body in them.")
    return {"voxel_jump_hu": jump, "stripe_hu": float(second[ok].mean()), "slices": int(x.shape[0]),
            "window": list(window) if window else None}


def relative(generated: dict[str, float], real: dict[str, float], keys: Sequence[str] = ("voxel_jump_hu",
                                                                                          "stripe_hu")) -> dict:
    """generated / real for each continuity score (1 = as continuous as the real slices)."""
    return {f"{k}_ratio": float(generated[k] / real[k]) if real[k] > 0 else float("nan") for k in keys}
