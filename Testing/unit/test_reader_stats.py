"""The reader-study statistics against hand-computed values and against scikit-learn / statsmodels."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import cohen_kappa_score, roc_auc_score
from statsmodels.stats.inter_rater import fleiss_kappa as sm_fleiss

from radsynth.reader import stats


def test_auc_by_hand_with_ties():
    # pairs (3,1) (3,3) (5,1) (5,3): 1 + 1/2 + 1 + 1 = 3.5 of 4
    assert stats.auc([3, 5], [1, 3]) == pytest.approx(0.875)
    assert stats.auc([1, 1], [1, 1]) == 0.5
    assert stats.auc([-5], [5]) == 0.0
    assert stats.auc([], [1]) is None


def test_signed_rating_orders_certainly_real_to_certainly_synthetic():
    order = [stats.signed_rating(lab, c) for lab, c in
             [("real", 5), ("real", 1), ("synthetic", 1), ("synthetic", 5)]]
    assert order == [-5, -1, 1, 5]


def test_auc_and_roc_against_scikit_learn():
    rng = np.random.default_rng(1)
    for _ in range(20):
        truth = rng.integers(0, 2, 30)
        truth[:2] = [0, 1]
        ratings = rng.choice([-5, -4, -3, -2, -1, 1, 2, 3, 4, 5], 30) + 2 * truth
        ours = stats.auc(ratings[truth == 1], ratings[truth == 0])
        assert ours == pytest.approx(roc_auc_score(truth, ratings), abs=1e-12)
        fpr, tpr = stats.roc_points(ratings[truth == 1], ratings[truth == 0])
        assert np.trapezoid(tpr, fpr) == pytest.approx(ours, abs=1e-12)
        assert (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0, 0, 1, 1)


def test_bootstrap_interval_is_seeded_and_contains_the_estimate():
    pos = [1, 2, 3, 4, 5, -1, 3, 4, -2, 1, 2, -3, 5, 1, -1, 2]
    neg = [-5, -4, -2, 1, -3, 2, -1, -2, 3, -1, 1, -4, 2, -2, 4, -1]
    a = stats.bootstrap_auc(pos, neg, 2000, seed=5)
    assert a == stats.bootstrap_auc(pos, neg, 2000, seed=5)
    assert a != stats.bootstrap_auc(pos, neg, 2000, seed=6)
    assert a[0] < stats.auc(pos, neg) < a[1] and 0 <= a[0] and a[1] <= 1
    narrow = stats.bootstrap_auc(pos * 10, neg * 10, 2000, seed=5)
    assert narrow[1] - narrow[0] < a[1] - a[0], "more cases, narrower interval"
    ratings = np.array([pos + neg, [p - 1 for p in pos] + neg], dtype=float)
    truth = np.array([1] * 16 + [0] * 16)
    lo, hi = stats.bootstrap_reader_averaged_auc(ratings, truth, 500, seed=1)
    assert lo < stats.reader_averaged_auc(ratings, truth) < hi


def test_binomial_against_hand_computation():
    res = stats.binomial(8, 10)
    assert res["p_value"] == pytest.approx(112 / 1024)  # 2 (C(10,8) + C(10,9) + C(10,10)) / 2^10
    assert res["ci_low"] < 0.8 < res["ci_high"]
    assert stats.binomial(5, 10)["p_value"] == pytest.approx(1.0)
    assert stats.binomial(0, 0)["p_value"] is None


def test_confusion_sensitivity_specificity():
    counts = stats.confusion([1, 1, 1, 0, 0], [1, 0, 1, 1, 0])
    assert counts == {"tp": 2, "fn": 1, "tn": 1, "fp": 1}


def test_cohen_kappa_by_hand():
    # 50 cases: both yes 20, A yes / B no 5, A no / B yes 10, both no 15 -> p_o 0.7, p_e 0.5, kappa 0.4
    a = ["y"] * 20 + ["y"] * 5 + ["n"] * 10 + ["n"] * 15
    b = ["y"] * 20 + ["n"] * 5 + ["y"] * 10 + ["n"] * 15
    assert stats.cohen_kappa(a, b) == pytest.approx(0.4)
    assert stats.cohen_kappa(a, a) == pytest.approx(1.0)
    assert stats.cohen_kappa(["y", "y"], ["y", "y"]) is None


def test_cohen_kappa_against_scikit_learn():
    rng = np.random.default_rng(2)
    for weights in (None, "linear", "quadratic"):
        for _ in range(10):
            a = rng.integers(1, 6, 25)
            b = np.clip(a + rng.integers(-1, 2, 25), 1, 5)
            ours = stats.cohen_kappa(list(a), list(b), range(1, 6), weights)
            assert ours == pytest.approx(cohen_kappa_score(a, b, labels=list(range(1, 6)), weights=weights))


def test_fleiss_kappa_by_hand_and_against_statsmodels():
    # the worked example on Wikipedia's "Fleiss' kappa" page: 10 subjects, 14 raters, 5 categories, kappa 0.210
    table = np.array([[0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
                      [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7]])
    assert stats.fleiss_kappa(table) == pytest.approx(0.20993, abs=1e-5)
    assert stats.fleiss_kappa(table) == pytest.approx(sm_fleiss(table, method="fleiss"))
    rng = np.random.default_rng(3)
    for _ in range(10):
        ratings = [list(rng.choice(["real", "synthetic"], 4)) for _ in range(15)]
        t = stats.fleiss_table(ratings, ["real", "synthetic"])
        assert t.sum(axis=1).tolist() == [4] * 15
        assert stats.fleiss_kappa(t) == pytest.approx(sm_fleiss(t, method="fleiss"))
    with pytest.raises(ValueError):
        stats.fleiss_kappa(np.array([[1, 1], [2, 1]]))
