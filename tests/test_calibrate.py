"""Temperature scaling and the operating-threshold rule, on hand-made cases."""

from __future__ import annotations

import numpy as np
import pytest

from medapp.model.calibrate import choose_threshold, fit_temperature, softmax


def test_softmax_rows_sum_to_one_and_temperature_softens():
    logits = np.array([[2.0, 0.0, -1.0]])
    p1, p2 = softmax(logits), softmax(logits, temperature=2.0)
    assert p1.sum() == pytest.approx(1.0) and p2.sum() == pytest.approx(1.0)
    assert p2.max() < p1.max()


def test_temperature_recovers_the_scale_of_overconfident_logits():
    """Labels drawn from softmax(z); the model reports 3*z, so the NLL-optimal temperature is about 3."""
    rng = np.random.default_rng(0)
    z = rng.normal(size=(4000, 3))
    labels = np.array([rng.choice(3, p=p) for p in softmax(z)])
    assert fit_temperature(3 * z, labels) == pytest.approx(3.0, rel=0.1)


@pytest.mark.parametrize(
    ("p", "y", "min_sens", "expected"),
    [
        # 10 positives: sensitivity >= 0.9 needs 9 flagged -> threshold at the 9th highest positive score
        (np.r_[np.linspace(0.95, 0.5, 10), [0.1, 0.2]], np.r_[[1] * 10, [0, 0]], 0.9, 0.55),
        # 4 positives: 0.9 * 4 = 3.6 -> all 4 must be flagged
        (np.array([0.9, 0.8, 0.3, 0.2, 0.1]), np.array([1, 1, 1, 1, 0]), 0.9, 0.2),
        (np.array([0.9, 0.8, 0.3, 0.2, 0.1]), np.array([1, 1, 1, 1, 0]), 0.5, 0.8),
    ],
)
def test_threshold_rule_hand_checked(p, y, min_sens, expected):
    t = choose_threshold(p, y, min_sens)
    assert t == pytest.approx(expected)
    assert (p[y == 1] >= t).mean() >= min_sens


def test_threshold_needs_positives():
    with pytest.raises(ValueError, match="no malignant"):
        choose_threshold(np.array([0.2, 0.3]), np.array([0, 0]))
