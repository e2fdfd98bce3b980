"""Likelihood categories: the BI-RADS likelihood bands, their edges, monotonicity and wording."""

from __future__ import annotations

import numpy as np
import pytest

from medapp.serving.likelihood import (
    BANDS,
    BIOPSY_CODES,
    BIOPSY_RANGE,
    CATEGORIES,
    DISCLAIMER,
    FLAGGED,
    NOT_FLAGGED,
    band_for,
    categorize_likelihood,
    decision_sentence,
    decision_tone,
)


@pytest.mark.parametrize(
    ("p", "code"),
    [(0.0, "3"), (0.01, "3"), (0.02, "3"), (0.0201, "4A"), (0.05, "4A"), (0.10, "4A"), (0.1001, "4B"),
     (0.30, "4B"), (0.50, "4B"), (0.5001, "4C"), (0.80, "4C"), (0.9499, "4C"), (0.95, "5"), (1.0, "5")],
)
def test_band_edges_follow_birads(p: float, code: str) -> None:
    assert band_for(p).code == code


@pytest.mark.parametrize("label", [None, "normal", "benign", "malignant"])
@pytest.mark.parametrize("threshold", [0.99, 0.05, 0.3])
def test_categories_monotone_in_p_malignant(label: str | None, threshold: float) -> None:
    ranks = [categorize_likelihood(p, label=label, threshold=threshold, normal_ceiling=0.1).rank
             for p in np.linspace(0, 1, 2001)]
    assert all(a <= b for a, b in zip(ranks, ranks[1:]))
    assert ranks[-1] == 5


@pytest.mark.parametrize(
    ("p", "label", "threshold", "code"),
    [(0.01, "normal", 0.3, "normal"), (0.08, "normal", 0.3, "4A"), (0.08, "normal", 0.05, "4A"),
     (0.2, "normal", 0.3, "4B"), (0.01, "benign", 0.3, "3"), (0.01, "normal", 0.99, "normal"),
     (0.021, "normal", 0.3, "4A")],
)
def test_normal_wording_only_in_the_lowest_band(p: float, label: str, threshold: float, code: str) -> None:
    """The malignancy band decides the wording: "normal" never stands in the biopsy range (4A and up, > 2%)."""
    assert categorize_likelihood(p, label=label, threshold=threshold, normal_ceiling=0.1).code == code


def test_normal_ceiling_comes_from_the_caller() -> None:
    """The card's serving.normal_ceiling can lower where "normal" stops, never raise it past the 3 band."""
    assert categorize_likelihood(0.015, label="normal", threshold=0.5, normal_ceiling=0.1).code == "normal"
    assert categorize_likelihood(0.015, label="normal", threshold=0.5, normal_ceiling=0.01).code == "3"
    assert categorize_likelihood(0.005, label="normal", threshold=0.5, normal_ceiling=0.01).high == 0.01
    assert categorize_likelihood(0.005, label="normal", threshold=0.5, normal_ceiling=0.1).high == 0.02


@pytest.mark.parametrize(("p", "threshold", "tone", "text"), [
    (0.62, 0.5, FLAGGED,
     "P(malignant) 62% is at or above the operating threshold 50%: flagged as suspicious for malignancy"),
    (0.5, 0.5, FLAGGED,
     "P(malignant) 50% is at or above the operating threshold 50%: flagged as suspicious for malignancy"),
    (0.004, 0.5, NOT_FLAGGED,
     "P(malignant) <1% is below the operating threshold 50% and at most 2% (the BI-RADS 3 range or lower): not "
     "flagged"),
    (0.12, 0.14, BIOPSY_RANGE,
     "P(malignant) 12% is below the operating threshold 14%, but in the BI-RADS 4B range, where biopsy is usually "
     "recommended: not a reassuring result; decide on the whole examination"),
])
def test_decision_sentence_and_tone(p: float, threshold: float, tone: str, text: str) -> None:
    category = categorize_likelihood(p, label="benign", threshold=threshold, normal_ceiling=0.1)
    assert decision_sentence(p, threshold, category) == text
    assert decision_tone(p, threshold, category) == tone


@pytest.mark.parametrize("label", ["normal", "benign", "malignant"])
def test_no_reassuring_decision_anywhere_in_the_biopsy_range(label: str) -> None:
    """Issue 13, item 4: category and decision tell one story; 4A-5 never reads "not flagged"."""
    for threshold in (0.05, 0.1375, 0.3, 0.6):
        for p in np.linspace(0, 1, 1001):
            category = categorize_likelihood(p, label=label, threshold=threshold, normal_ceiling=0.1)
            tone = decision_tone(p, threshold, category)
            assert (tone == NOT_FLAGGED) == (category.code in ("normal", "3") and p < threshold)
            if category.code in BIOPSY_CODES:
                assert "not flagged" not in decision_sentence(p, threshold, category)


def test_wording_is_a_model_estimate_not_an_assessment() -> None:
    for category in CATEGORIES.values():
        assert category.label.startswith("Model estimate")
    assert "not a BI-RADS assessment" in DISCLAIMER
    assert [b.code for b in BANDS] == ["3", "4A", "4B", "4C", "5"]
    assert "10–50%" in CATEGORIES["4B"].label


@pytest.mark.parametrize("bad", [-0.1, 1.2, float("nan")])
def test_invalid_probability_refused(bad: float) -> None:
    with pytest.raises(ValueError, match="probability in"):
        band_for(bad)
