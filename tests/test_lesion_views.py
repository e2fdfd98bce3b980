"""Combining a lesion's views: the rules on hand-checkable numbers, and the per-lesion table on a synthetic set."""

from __future__ import annotations

import math

import numpy as np
import pytest

from medapp.evaluation.lesion_views import group_lesions, view_table
from medapp.serving.lesion_estimate import DEFAULT_RULE, RULES, combine_views


def test_rules_on_hand_checked_numbers():
    assert combine_views([0.2, 0.6], "mean") == pytest.approx(0.4)
    assert combine_views([0.2, 0.6], "max") == pytest.approx(0.6)
    odds = math.sqrt((0.2 / 0.8) * (0.6 / 0.4))  # the geometric mean of the odds
    assert combine_views([0.2, 0.6], "logit_mean") == pytest.approx(odds / (1 + odds))
    for rule in RULES:
        assert combine_views([0.37], rule) == pytest.approx(0.37)  # one view is itself
        assert 0.2 <= combine_views([0.2, 0.6], rule) <= 0.6
    assert combine_views([0.0, 1.0], "logit_mean") == pytest.approx(0.5)  # no infinities at the ends
    assert DEFAULT_RULE in RULES


@pytest.mark.parametrize("bad", [[], [float("nan")], [1.2], [-0.1]])
def test_bad_views_refused(bad):
    with pytest.raises(ValueError):
        combine_views(bad)
    with pytest.raises(ValueError, match="unknown rule"):
        combine_views([0.5], "median")


def test_table_shows_the_gain_when_views_carry_independent_noise():
    rng = np.random.default_rng(0)
    rows = []
    for lesion in range(200):
        malignant = lesion % 3 == 0
        for view in ("l", "r"):  # each view: the truth plus its own noise, so two views average the noise away
            logit = (1.0 if malignant else -1.0) + rng.normal(scale=1.5)
            rows.append({"image": f"{lesion}-{view}.png", "patient": lesion, "p_malignant": 1 / (1 + np.exp(-logit)),
                         "label": "malignant" if malignant else "benign"})
    rows.append({"image": "single.png", "patient": 999, "p_malignant": 0.5, "label": "benign"})  # one view: left out
    table = view_table(group_lesions(rows), n_boot=200)
    assert table["lesions"] == 200 and table["malignant"] == 67
    assert table["logit_mean"]["auc"] > table["one view"]["auc"] + 0.02
    assert table["logit_mean"]["gain_ci"][0] > 0
    assert table["one view"]["auc"] == pytest.approx((table["first view"]["auc"] + table["second view"]["auc"]) / 2)
