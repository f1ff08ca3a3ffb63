"""The bridge's source inside a requested tumour: a texture with the requested mean, spread and contrast.

The paper's source image has the tumour region blanked, so the radiomics reach the network only through
cross-attention. Trained here for minutes on a CPU, such a model learned to ignore its condition: even on its own
training samples the requested mean intensity moved the output by less than 0.01 HU per HU. Starting the bridge
from a coarse texture that already has the requested first-order mean and standard deviation puts the request
where every convolution sees it; the model turns it into tissue with the requested texture features (the tokens
still carry all of them). The noise's grain follows the requested GLCM contrast, so the contrast slider reaches
the source too (with a fixed grain, contrast could only follow the spread). Removal keeps the constant fill, so the
two paths stay apart.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
from scipy import ndimage

from .region import RegionSpec

#: card value of ``source_prior`` for models trained with this source
MEAN_SD_CONTRAST = "mean-sd-contrast"
#: pyradiomics bin width of the project's CT settings (radiomics_ct.yaml, ct-v1): GLCM contrast is in bins²
BIN_WIDTH_HU = 25.0
#: Gaussian-filtered noise: glcm_Contrast × bin width² / variance against the filter's sigma (voxels), measured with
#: the project's radiomics settings on 42 mm spheres at SD 40 and 100 HU (they agree within 10 %). Inverted, it gives
#: the grain whose neighbour-to-neighbour contrast matches the request. Real tumours sit near 0.5-0.8 (grain ~1.2).
_GRAIN_VOX = (0.5, 0.75, 1.0, 1.5, 2.0, 3.0)
_CONTRAST_RATIO = (1.85, 1.23, 0.82, 0.43, 0.26, 0.13)
#: finer grain does not survive the demo VQ-GAN (SD 120 HU at grain 1 comes back as 42 HU, at grain 2 as 81 HU):
#: a finer request would only lower the spread, so the sharpest texture asked for is this one
MIN_GRAIN_VOX = 1.5


def prior_grain(features: Mapping[str, float]) -> float:
    """The noise grain (voxels) whose GLCM contrast, at the requested variance, is the requested contrast."""
    variance = max(float(features["firstorder_Variance"]), 1e-6)
    ratio = max(float(features["glcm_Contrast"]), 0.0) * BIN_WIDTH_HU ** 2 / variance
    grain = float(np.interp(-ratio, [-r for r in _CONTRAST_RATIO], _GRAIN_VOX))   # clamped to the table's ends
    return max(grain, MIN_GRAIN_VOX)


def with_prior(image: np.ndarray, mask: np.ndarray, features: Mapping[str, float], spec: RegionSpec,
               rng: np.random.Generator) -> np.ndarray:
    """``image`` (normalized crop) with ``mask`` filled by Gaussian texture of the features' mean, SD (HU) and
    GLCM contrast."""
    noise = ndimage.gaussian_filter(rng.standard_normal(mask.shape), prior_grain(features))
    inside = noise[mask > 0]
    if inside.size:   # exact statistics where they count: inside the tumour
        noise = (noise - inside.mean()) / (inside.std() + 1e-8)
    sd = float(np.sqrt(max(float(features["firstorder_Variance"]), 0.0)))
    prior = spec.normalize(float(features["firstorder_Mean"]) + sd * noise)
    return np.where(mask > 0, prior, image).astype(np.float32)
