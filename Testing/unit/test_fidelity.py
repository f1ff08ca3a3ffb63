"""Feature-fidelity statistics on synthetic arrays: a perfect model, a model that ignores its condition (and how the
paper's per-sample protocol on raw features still rewards it), the shuffled baseline, NaN handling, monotonicity."""

from __future__ import annotations

import matplotlib.image as mpimg
import numpy as np
import pytest

from radsynth.evaluate import fidelity as fd

N, F = 200, 12
#: disparate feature scales, like mm³ volumes next to unitless ratios and HU means
SCALES = np.logspace(-2, 5, F)


def _population(rng: np.random.Generator, n: int = N) -> np.ndarray:
    """Plausible feature vectors: every feature positive, centred at its own scale, 20% spread."""
    return SCALES * (1.0 + 0.2 * rng.standard_normal((n, F)))


def test_perfect_agreement_scores_one_everywhere():
    rng = np.random.default_rng(0)
    req = _population(rng)
    table = fd.per_feature_correlation(req, req.copy())
    assert all(v["pearson"] == pytest.approx(1.0) and v["spearman"] == pytest.approx(1.0) for v in table.values())
    ps = fd.per_sample_correlation(req, req.copy())
    for protocol in ("raw", "normalized"):
        assert ps[protocol]["pearson"]["mean"] == pytest.approx(1.0)
        assert ps[protocol]["spearman"]["mean"] == pytest.approx(1.0)


def test_monotone_but_nonlinear_response_is_perfect_for_spearman_only():
    rng = np.random.default_rng(1)
    req = _population(rng)
    table = fd.per_feature_correlation(req, np.exp(req / SCALES * 5))
    assert all(v["spearman"] == pytest.approx(1.0) for v in table.values())
    assert all(v["pearson"] < 0.99 for v in table.values())


def test_ignoring_the_condition_is_zero_per_feature_but_high_per_sample_on_raw_features():
    rng = np.random.default_rng(2)
    req, ach = _population(rng), _population(rng)      # achieved drawn independently of the request
    summary = fd.summarize_features(fd.per_feature_correlation(req, ach))
    assert abs(summary["median_spearman"]) < 0.1
    ps = fd.per_sample_correlation(req, ach)
    # the paper's protocol: the raw vector is ordered by feature scale in both, so it correlates almost perfectly
    assert ps["raw"]["spearman"]["mean"] > 0.95
    assert ps["raw"]["pearson"]["mean"] > 0.95
    # the same statistic on normalized features sees through it
    assert abs(ps["normalized"]["spearman"]["mean"]) < 0.1
    assert abs(ps["normalized"]["pearson"]["mean"]) < 0.1


def test_shuffled_baseline_of_a_perfect_model_is_near_zero_per_feature_but_not_per_sample_raw():
    rng = np.random.default_rng(3)
    req = _population(rng)
    base = fd.shuffled_baseline(req, req.copy(), rng, n_perm=5)
    assert abs(base["median_spearman"]) < 0.1
    assert all(abs(v) < 0.3 for v in base["per_feature_spearman"].values())
    assert base["per_sample"]["raw"]["spearman"] > 0.95
    assert abs(base["per_sample"]["normalized"]["spearman"]) < 0.1


def test_shuffle_never_returns_a_sample_its_own_request():
    rng = np.random.default_rng(4)
    for n in (2, 3, 10, 51):
        perm = fd._derangement(n, rng)
        assert sorted(perm) == list(range(n))
        assert not np.any(perm == np.arange(n))


def test_constant_and_missing_columns_give_nan_with_a_note():
    rng = np.random.default_rng(5)
    req = _population(rng, 20)
    ach = req.copy()
    req[:, 0] = 3.0                 # e.g. a feature the requests never varied
    ach[:, 1] = 7.0                 # e.g. a feature the model always returns the same value for
    ach[:18, 2] = np.nan            # e.g. a feature that failed to extract for most samples
    ach[0, 3] = np.nan              # one failure only: the column is still usable
    names = [f"x{i}" for i in range(F)]
    table = fd.per_feature_correlation(req, ach, names)
    assert np.isnan(table["x0"]["spearman"]) and "requested" in table["x0"]["note"]
    assert np.isnan(table["x1"]["pearson"]) and "achieved" in table["x1"]["note"]
    assert np.isnan(table["x2"]["spearman"]) and "finite" in table["x2"]["note"]
    assert table["x3"]["spearman"] == pytest.approx(1.0) and "note" not in table["x3"]
    summary = fd.summarize_features(table)
    assert summary["n_undefined"] == 3 and summary["median_spearman"] == pytest.approx(1.0)
    assert np.isfinite(fd.shuffled_baseline(req, ach, rng, names=names, n_perm=3)["median_spearman"])


def test_shape_mismatch_is_refused():
    with pytest.raises(ValueError):
        fd.per_feature_correlation(np.zeros((4, 3)), np.zeros((4, 2)))


def test_slider_monotonicity():
    values = np.linspace(-150, 150, 7)
    assert fd.slider_monotonicity(values, 0.3 * values + 5) == pytest.approx(1.0)
    assert fd.slider_monotonicity(values, -values ** 3) == pytest.approx(-1.0)
    assert np.isnan(fd.slider_monotonicity(values, np.full(7, 2.0)))
    noisy = values + np.array([0, 200, -200, 0, 200, -200, 0])
    assert fd.slider_monotonicity(values, noisy) < 0.8


def test_fidelity_section_summary_and_plots(tmp_path):
    rng = np.random.default_rng(6)
    req = _population(rng, 30)
    ach = req + 0.5 * SCALES * 0.2 * rng.standard_normal(req.shape)
    names = [f"feature_{i}" for i in range(F)]
    section = fd.fidelity(req, ach, names, rng, n_perm=4, exclude=["feature_0"])
    assert section["per_feature_summary"]["n_features"] == F - 1
    assert section["per_feature_summary"]["median_spearman"] > 0.7 > section["shuffled"]["median_spearman"]
    lines = fd.summary_lines(section)
    assert len(lines) == 8 and "shuffled" in lines[0]
    bar = fd.bar_plot(tmp_path / "bar.png", section, "test")
    scatter = fd.scatter_plot(tmp_path / "scatter.png", [(n, req[:, i], ach[:, i]) for i, n in enumerate(names[:4])],
                              "test")
    assert mpimg.imread(str(bar)).shape[0] > 100 and mpimg.imread(str(scatter)).shape[1] > 100


def test_interior_drops_the_rim_in_millimetres():
    from radsynth.evaluate.texture_eval import interior

    block = np.zeros((10, 60, 60), bool)
    block[2:7, 10:50, 10:50] = True
    core = np.argwhere(interior(block, (5.0, 0.57, 0.57), depth_mm=3.0))
    # thick slices: the partial-volume end slices go; in plane ceil(3 / 0.57) = 6 voxels
    assert core.min(0).tolist() == [3, 16, 16] and core.max(0).tolist() == [5, 43, 43]
    k, j, i = np.indices((21, 21, 21)) - 10
    sphere = (k * k + j * j + i * i) * 1.5 ** 2 <= 10.0 ** 2     # 10 mm radius at 1.5 mm
    radius = np.sqrt((np.argwhere(interior(sphere, (1.5,) * 3, depth_mm=3.0)) - 10) ** 2 @ np.ones(3)).max() * 1.5
    assert 6.0 <= radius <= 7.5, "about 10 - 3 mm, give or take the voxel grid"


def test_absolute_error_sees_an_offset_that_correlations_miss():
    rng = np.random.default_rng(5)
    req = _population(rng)
    normalize = fd.zscore_by(req)
    assert fd.abs_error(req, req.copy(), normalize) == pytest.approx(0.0)
    shifted = req + 0.5 * req.std(axis=0)                     # every feature half an SD too high
    assert fd.per_sample_correlation(req, shifted)["normalized"]["pearson"]["mean"] == pytest.approx(1.0)
    assert fd.abs_error(req, shifted, normalize) == pytest.approx(0.5, rel=1e-6)
    section = fd.fidelity(req, shifted, [f"f{i}" for i in range(F)], rng, n_perm=5)
    # a model that ignores its request lands about one population spread away: the baseline says so
    assert section["abs_error"] == pytest.approx(0.5, rel=1e-6) and section["shuffled"]["abs_error"] > 0.8
    assert any("achieved − requested" in line for line in fd.summary_lines(section))
