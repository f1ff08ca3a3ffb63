"""The coarse texture a prior-source model starts its bridge from: requested mean and SD, inside the mask only."""

import numpy as np
import pytest

from radsynth.region import RegionSpec
from radsynth.texture_prior import with_prior

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
    out = with_prior(image, mask, {"firstorder_Mean": mean, "firstorder_Variance": sd ** 2}, SPEC,
                     np.random.default_rng(0))
    hu = SPEC.denormalize(out[mask])
    assert hu.mean() == pytest.approx(mean, abs=0.05 * sd + 1.0)
    assert hu.std() == pytest.approx(sd, rel=0.05)


def test_outside_is_untouched_and_the_seed_repeats(crop):
    image, mask = crop
    feats = {"firstorder_Mean": 30.0, "firstorder_Variance": 400.0}
    a = with_prior(image, mask, feats, SPEC, np.random.default_rng(5))
    assert np.array_equal(a[~mask], image[~mask])
    assert np.array_equal(a, with_prior(image, mask, feats, SPEC, np.random.default_rng(5)))
    assert not np.array_equal(a[mask], with_prior(image, mask, feats, SPEC, np.random.default_rng(6))[mask])
