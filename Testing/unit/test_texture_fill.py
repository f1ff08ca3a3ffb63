"""Filling unset texture features: conditional mean of the training Gaussian, centred on the source."""

import numpy as np
import pytest

from radsynth.conditioning import conditional_fill, fit_gaussian, gaussian_from_card
from radsynth.errors import ModelError, RadSynthError
from radsynth.pipelines.texture_fill import (FILL_GAUSSIAN, FILL_NONE, SLIDER_EVALUATION, complete_texture, moved,
                                             outside_training, texture_warnings, unfollowed)
from radsynth.radiomics import FeatureNormalizer

NAMES = ("mean", "p90", "contrast")


@pytest.fixture
def model():
    """Training rows where p90 = mean + 40 HU exactly and contrast is independent of both."""
    rng = np.random.default_rng(0)
    mean = rng.normal(0.0, 50.0, 4000)
    rows = [{"mean": m, "p90": m + 40.0, "contrast": c} for m, c in zip(mean, rng.normal(10.0, 2.0, 4000))]
    normalizer = FeatureNormalizer.fit(NAMES, rows)
    card = {"gaussian": fit_gaussian(np.stack([normalizer.normalize(r) for r in rows]))}
    return normalizer, gaussian_from_card(card, len(NAMES))


SOURCE = {"mean": 20.0, "p90": 70.0, "contrast": 12.0}


def test_no_override_gives_back_the_source(model):
    target, how = complete_texture(*model, SOURCE, {})
    assert target == SOURCE and how == FILL_GAUSSIAN


def test_a_moved_slider_carries_its_correlated_features(model):
    target, how = complete_texture(*model, SOURCE, {"mean": 80.0})
    assert target["mean"] == 80.0 and how == FILL_GAUSSIAN
    # p90 follows mean one-to-one in training: +60 HU on mean moves it +60 HU from the source's value
    assert target["p90"] == pytest.approx(130.0, abs=1.0)
    # contrast is uncorrelated: it keeps the source's value
    assert target["contrast"] == pytest.approx(12.0, abs=0.2)


def test_without_a_gaussian_only_the_override_changes(model):
    target, how = complete_texture(model[0], None, SOURCE, {"mean": 80.0})
    assert target == dict(SOURCE, mean=80.0) and how == FILL_NONE


@pytest.mark.parametrize("overrides, message", [({"glcm_Nope": 1.0}, "not a texture feature"),
                                                ({"mean": float("nan")}, "finite number"),
                                                ({"mean": "high"}, "finite number")])
def test_bad_overrides_are_refused(model, overrides, message):
    with pytest.raises(RadSynthError, match=message):
        complete_texture(*model, SOURCE, overrides)


def test_a_source_missing_features_is_refused(model):
    with pytest.raises(RadSynthError, match="lacks 1 features"):
        complete_texture(*model, {"mean": 1.0, "p90": 2.0}, {"mean": 3.0})


def test_conditional_fill_sets_the_fixed_entries_exactly():
    cov = np.array([[1.0, 0.5], [0.5, 1.0]])
    x = conditional_fill(np.zeros(2), cov, {0: 2.0})
    assert x[0] == 2.0 and x[1] == pytest.approx(0.5 * 2.0 / (1.0 + 1e-3))


@pytest.mark.parametrize("card", [{}, {"gaussian": {"mean": [0.0], "cov": [[1.0]]}},
                                  {"gaussian": {"mean": [0, 0, 0], "cov": [[float("nan")] * 3] * 3}}])
def test_unusable_card_gaussians_are_refused(card):
    with pytest.raises(ModelError):
        gaussian_from_card(card, 3)


def test_filled_features_stay_in_the_training_range(model):
    """A request far outside the training data: the set feature is taken as asked, the filled ones stop at the
    largest value training saw (a linear fill would extrapolate without limit, e.g. to negative variances)."""
    normalizer, gaussian = model
    target, _ = complete_texture(normalizer, gaussian, SOURCE, {"mean": 1000.0})
    highest_p90 = normalizer.denormalize(gaussian.high)["p90"]
    assert target["mean"] == 1000.0
    assert target["p90"] == pytest.approx(highest_p90) and highest_p90 < 300.0


def test_requests_beyond_the_training_tumours_are_named(model):
    normalizer, gaussian = model
    assert outside_training(normalizer, gaussian, {"mean": 20.0, "contrast": 11.0}) == {}
    far = outside_training(normalizer, gaussian, {"mean": 1000.0, "contrast": 11.0})
    assert list(far) == ["mean"]
    value, low, high = far["mean"]
    assert value == 1000.0 and low < -100.0 < 100.0 < high < 1000.0
    assert high == pytest.approx(normalizer.denormalize(gaussian.high)["mean"], abs=1e-3)
    assert outside_training(normalizer, None, {"mean": 1000.0}) == {}


def test_only_moved_sliders_that_the_model_does_not_follow_are_named():
    card = {SLIDER_EVALUATION: {"texture": {"mean": {"spearman": 1.0, "slope": 0.62},
                                            "contrast": {"spearman": -0.34, "slope": -0.42},
                                            "p90": {"spearman": 0.9, "slope": 0.05}}}}
    # the panel sends every slider, rounded to its precision: only real moves count
    changed = moved(SOURCE, {"mean": 20.1, "p90": 75.0, "contrast": 12.04})
    assert changed == ["p90"]
    assert list(unfollowed(card, changed)) == ["p90"]            # monotone but a twentieth of the request
    assert list(unfollowed({SLIDER_EVALUATION: {"texture": {"mean": {"spearman": 1.0, "slope": 0.48}}}},
                           ["mean"])) == ["mean"]                # below the part-3 target of half the request
    assert list(unfollowed(card, ["mean", "contrast"])) == ["contrast"]
    assert unfollowed({}, ["contrast"]) == {}                    # nothing recorded, nothing claimed
    assert unfollowed({SLIDER_EVALUATION: {"texture": {"contrast": {"slope": "?"}}}}, ["contrast"]) == {}
    assert unfollowed({SLIDER_EVALUATION: [1, 2]}, ["contrast"]) == {}   # a hand-edited card does not stop a run
    lines = texture_warnings({"texture_outside_training": {"mean": [1000.0, -150.0, 150.0]},
                              "texture_unfollowed": unfollowed(card, ["contrast"])})
    assert len(lines) == 2 and "outside the tumours" in lines[0]
    assert "does not follow contrast" in lines[1] and "Spearman -0.34" in lines[1]
