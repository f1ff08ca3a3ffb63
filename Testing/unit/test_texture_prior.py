"""The coarse texture a prior-source model starts its bridge from: requested mean and SD, inside the mask only."""

import numpy as np
import pytest

from radsynth.region import RegionSpec
from radsynth.radiomics import texture_features
from radsynth.texture_prior import MIN_GRAIN_VOX, prior_grain, with_prior
from radsynth.volume import Volume

SPEC = RegionSpec(size=(48, 48, 48), spacing=(1.0, 1.0, 1.0), window=(-1000.0, 400.0))


@pytest.fixture
def crop():
    rng = np.random.default_rng(1)
    image = rng.uniform(-1.0, 1.0, SPEC.size).astype(np.float32)
    mask = np.zeros(SPEC.size, dtype=bool)
    mask[8:40, 8:40, 8:40] = True
    return image, mask


@pytest.mark.parametrize("mean, sd", [(-120.0, 10.0), (40.0, 60.0), (150.0, 120.0)])
def test_inside_has_the_requested_mean_and_spread(crop, mean, sd):
    image, mask = crop
    out = with_prior(image, mask, {"firstorder_Mean": mean, "firstorder_Variance": sd ** 2, "glcm_Contrast": 10.0},
                     SPEC, np.random.default_rng(0))
    hu = SPEC.denormalize(out[mask])
    assert hu.mean() == pytest.approx(mean, abs=0.05 * sd + 1.0)
    assert hu.std() == pytest.approx(sd, rel=0.05)


def test_outside_is_untouched_and_the_seed_repeats(crop):
    image, mask = crop
    feats = {"firstorder_Mean": 30.0, "firstorder_Variance": 400.0, "glcm_Contrast": 0.3}
    a = with_prior(image, mask, feats, SPEC, np.random.default_rng(5))
    assert np.array_equal(a[~mask], image[~mask])
    assert np.array_equal(a, with_prior(image, mask, feats, SPEC, np.random.default_rng(5)))
    assert not np.array_equal(a[mask], with_prior(image, mask, feats, SPEC, np.random.default_rng(6))[mask])


@pytest.mark.parametrize("sd, contrast", [(40.0, 1.1), (40.0, 0.7), (100.0, 6.0), (100.0, 2.5)])
def test_the_grain_gives_the_requested_glcm_contrast(sd, contrast):
    spec = RegionSpec(size=(40, 40, 40), spacing=(1.5, 1.5, 1.5), window=(-1024.0, 1024.0))
    grid = np.mgrid[:40, :40, :40] - 20
    mask = (grid ** 2).sum(0) < 14 ** 2
    feats = {"firstorder_Mean": 20.0, "firstorder_Variance": sd ** 2, "glcm_Contrast": contrast}
    hu = spec.denormalize(with_prior(np.full(mask.shape, -0.8, np.float32), mask, feats, spec,
                                     np.random.default_rng(3)))
    got = texture_features(Volume(hu.astype(np.float32), (0, 0, 0), spec.spacing, (1, 0, 0, 0, 1, 0, 0, 0, 1)), mask)
    assert got["glcm_Contrast"] == pytest.approx(contrast, rel=0.25)


def test_the_grain_stays_in_its_measured_range():
    sharp = {"firstorder_Variance": 100.0, "glcm_Contrast": 1e4}
    smooth = {"firstorder_Variance": 1e4, "glcm_Contrast": 0.0}
    assert prior_grain(sharp) == MIN_GRAIN_VOX and prior_grain(smooth) == 3.0
    assert prior_grain({"firstorder_Variance": 1600.0, "glcm_Contrast": 0.26 * 1600 / 625}) == pytest.approx(2.0)
