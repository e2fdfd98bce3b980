"""Metric functions against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from medapp.evaluation.metrics import (
    binary_auc,
    bootstrap_auc_ci,
    expected_calibration_error,
    multiclass_summary,
    operating_point,
    reliability_bins,
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
