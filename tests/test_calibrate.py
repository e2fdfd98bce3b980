"""Temperature scaling and the operating-threshold rule, on hand-made cases."""

from __future__ import annotations

import numpy as np
import pytest

from medapp.model.calibrate import choose_threshold, choose_threshold_every_site, fit_temperature, softmax


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


def test_threshold_holds_at_every_site_not_only_pooled():
    """Site A's cancers score high, site B's lower: pooled, 0.9 of all ten is met by flagging A's five and four of
    B's; per site, B needs all five of its own at or above 0.9 x 5 = 4.5 -> all five, so the threshold drops to B's
    lowest cancer."""
    p = np.array([0.99, 0.98, 0.97, 0.96, 0.95, 0.60, 0.50, 0.40, 0.30, 0.20, 0.05, 0.05])
    y = np.array([1] * 10 + [0, 0])
    site = np.array([0] * 5 + [1] * 5 + [0, 1])
    assert choose_threshold(p, y, 0.9) == pytest.approx(0.30)
    t = choose_threshold_every_site(p, y, site, 0.9)
    assert t == pytest.approx(0.20)
    for s in (0, 1):
        assert (p[(site == s) & (y == 1)] >= t).mean() >= 0.9


def test_threshold_every_site_ignores_a_site_without_cancers():
    p, y, site = np.array([0.8, 0.6, 0.1, 0.7]), np.array([1, 1, 0, 0]), np.array([0, 0, 0, 1])
    assert choose_threshold_every_site(p, y, site, 0.9) == pytest.approx(0.6)
    with pytest.raises(ValueError, match="no malignant"):
        choose_threshold_every_site(p, np.zeros(4), site)
