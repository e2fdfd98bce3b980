"""Metric functions against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from medapp.evaluation.metrics import (
    binary_auc,
    bootstrap_auc_ci,
    equal_count_bins,
    expected_calibration_error,
    multiclass_summary,
    operating_point,
    reliability_bins,
    wilson_interval,
)


def test_auc_hand_checked_and_undefined_on_one_class():
    # pairs (pos, neg): (0.8,0.3) (0.8,0.6) (0.4,0.3) win, (0.4,0.6) loses -> 3/4
    assert binary_auc([1, 1, 0, 0], [0.8, 0.4, 0.3, 0.6]) == pytest.approx(0.75)
    assert math.isnan(binary_auc([1, 1], [0.2, 0.3]))


def test_operating_point_hand_checked():
    r = operating_point(np.array([1, 1, 1, 0, 0, 0, 0]), np.array([0.9, 0.6, 0.2, 0.7, 0.1, 0.1, 0.3]), 0.5)
    assert (r.tp, r.fn, r.fp, r.tn) == (2, 1, 1, 3)
    assert r.sensitivity == pytest.approx(2 / 3) and r.specificity == pytest.approx(3 / 4)
    assert r.ppv == pytest.approx(2 / 3) and r.npv == pytest.approx(3 / 4)
    assert r.accuracy == pytest.approx(5 / 7)


def test_ece_hand_checked():
    # bin [0.2, 0.267): p=0.25 x4, 1 positive -> |0.25-0.25|=0; bin [0.8, 0.867): p=0.8 x4, 2 positive -> 0.3
    p = np.array([0.25] * 4 + [0.8] * 4)
    y = np.array([1, 0, 0, 0, 1, 1, 0, 0])
    assert expected_calibration_error(y, p) == pytest.approx(0.5 * 0 + 0.5 * 0.3)
    bins = reliability_bins(y, p)
    assert bins["count"] == [4, 4] and bins["accuracy"] == [0.25, 0.5]


def test_bootstrap_ci_brackets_the_auc():
    rng = np.random.default_rng(1)
    y = rng.random(200) < 0.3
    s = y + rng.normal(scale=0.8, size=200)
    lo, hi = bootstrap_auc_ci(y, s, n_boot=300)
    assert lo < binary_auc(y, s) < hi


def test_multiclass_summary_confusion_rows_are_truth():
    labels = np.array([0, 1, 2, 2])
    probs = np.array([[0.8, 0.1, 0.1], [0.1, 0.8, 0.1], [0.1, 0.8, 0.1], [0.1, 0.1, 0.8]])
    s = multiclass_summary(labels, probs, 3)
    assert s["confusion_matrix"] == [[1, 0, 0], [0, 1, 0], [0, 1, 1]]
    assert s["accuracy_3class"] == pytest.approx(0.75)


def test_bootstrap_ci_of_a_one_class_set_is_undefined():
    lo, hi = bootstrap_auc_ci(np.array([1, 1, 1]), np.array([0.2, 0.5, 0.9]), n_boot=20)
    assert math.isnan(lo) and math.isnan(hi)


@pytest.mark.parametrize(
    ("k", "n", "low", "high"),
    [
        (5, 10, 0.2366, 0.7634),  # Brown, Cai & DasGupta 2001: symmetric about 0.5
        (0, 10, 0.0, 0.2775),  # 0 of n: not zero-width; high = z^2/n / (1 + z^2/n)
        (10, 10, 0.7225, 1.0),
        (1, 4, 0.0456, 0.6994),
    ],
)
def test_wilson_interval_hand_checked(k, n, low, high):
    assert wilson_interval(k, n) == pytest.approx((low, high), abs=1e-4)


def test_wilson_interval_of_nothing_is_undefined():
    assert all(math.isnan(v) for v in wilson_interval(0, 0))


def test_equal_count_bins_hand_checked():
    # sorted p: 0.1 0.2 | 0.3 0.4 | 0.7 0.9 -> 3 bins of 2; positives at 0.2, 0.7, 0.9
    p = np.array([0.9, 0.1, 0.4, 0.2, 0.7, 0.3])
    y = np.array([1, 0, 0, 1, 1, 0])
    bins = equal_count_bins(y, p, 3)
    assert bins["count"] == [2, 2, 2]
    assert bins["confidence"] == pytest.approx([0.15, 0.35, 0.8])
    assert bins["accuracy"] == pytest.approx([0.5, 0.0, 1.0])
    assert (bins["low"], bins["high"]) == ([0.1, 0.3, 0.7], [0.2, 0.4, 0.9])
    assert bins["ci_low"][1] == 0.0 and bins["ci_high"][2] == 1.0


def test_equal_count_bins_sizes_differ_by_at_most_one_and_never_exceed_the_images():
    rng = np.random.default_rng(0)
    p = rng.beta(0.3, 2.0, size=157)  # crowded near 0, as a calibrated model's benign images are
    bins = equal_count_bins(p > 0.5, p, 7)
    assert sum(bins["count"]) == 157 and max(bins["count"]) - min(bins["count"]) <= 1 and len(bins["count"]) == 7
    assert bins["confidence"] == sorted(bins["confidence"])
    assert len(equal_count_bins([1, 0], [0.2, 0.6], 5)["count"]) == 2
