"""Likelihood categories: the calibrated P(malignant) placed on the ACR BI-RADS likelihood-of-malignancy bands.

The bands are those of the ACR BI-RADS Atlas, 5th edition (2013), ultrasound assessment categories: category 3
"probably benign" (<= 2%), 4A (> 2% to <= 10%), 4B (> 10% to <= 50%), 4C (> 50% to < 95%) and 5 (>= 95%). The
category here is a *model estimate* expressed on those bands so that a clinician can read it on a familiar scale;
it is not a BI-RADS assessment, which only a radiologist makes from the whole examination.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from ..formatting import format_probability

DISCLAIMER = (
    "Model estimate placed on the ACR BI-RADS likelihood-of-malignancy bands; not a BI-RADS assessment, "
    "which only a radiologist makes from the whole examination."
)


@dataclass(frozen=True)
class LikelihoodCategory:
    """One band: ``code`` ("normal", "3", "4A", "4B", "4C", "5"), clinician wording, and its P(malignant) range.

    ``rank`` orders the categories by suspicion (normal 0 ... 5 highest), for sorting a worklist.
    """

    code: str
    label: str
    low: float
    high: float
    rank: int

    def to_dict(self) -> dict[str, object]:
        return {"code": self.code, "label": self.label, "low": self.low, "high": self.high, "rank": self.rank}


# Only ever in place of the BI-RADS 3 band (P(malignant) <= 2%, lower still if the card's ``normal_ceiling`` is):
# the malignancy band decides the wording, and "normal" never stands where a biopsy would be considered.
NORMAL = LikelihoodCategory(
    "normal", "Model estimate: normal-appearing breast tissue, no mass found (low likelihood of malignancy)",
    0.0, 0.02, 0,
)
# Upper edges are inclusive except 4C's (BI-RADS: 4C is > 50% to < 95%, 5 is >= 95%).
BANDS: tuple[LikelihoodCategory, ...] = (
    LikelihoodCategory("3", "Model estimate in the BI-RADS 3 range (≤2% likelihood of malignancy, probably benign)",
                       0.0, 0.02, 1),
    LikelihoodCategory("4A", "Model estimate in the BI-RADS 4A range (2–10% likelihood of malignancy)", 0.02, 0.10, 2),
    LikelihoodCategory("4B", "Model estimate in the BI-RADS 4B range (10–50% likelihood of malignancy)", 0.10, 0.50, 3),
    LikelihoodCategory("4C", "Model estimate in the BI-RADS 4C range (50–95% likelihood of malignancy)", 0.50, 0.95, 4),
    LikelihoodCategory("5", "Model estimate in the BI-RADS 5 range (≥95% likelihood of malignancy, highly "
                       "suggestive)", 0.95, 1.0, 5),
)
CATEGORIES: dict[str, LikelihoodCategory] = {c.code: c for c in (NORMAL, *BANDS)}


def band_for(p_malignant: float) -> LikelihoodCategory:
    """The BI-RADS likelihood band holding ``p_malignant`` in [0, 1]."""
    p = float(p_malignant)
    if math.isnan(p) or not 0.0 <= p <= 1.0:
        raise ValueError(f"P(malignant) must be a probability in [0, 1], got {p_malignant!r}")
    if p >= 0.95:
        return BANDS[4]
    for band in BANDS[:4]:
        if p <= band.high:
            return band
    return BANDS[3]  # 0.50 < p < 0.95


def categorize_likelihood(p_malignant: float, *, label: str | None, threshold: float,
                          normal_ceiling: float) -> LikelihoodCategory:
    """Category for a calibrated P(malignant); ``label`` is the model's top class.

    The malignancy band decides: "normal" replaces only the BI-RADS 3 band (<= 2%), and only when the top class is
    normal and P(malignant) is also below the operating ``threshold`` and the card's ``normal_ceiling``, so a
    malignancy estimate in the biopsy range (4A and up) is never hidden behind the word "normal".
    """
    band = band_for(p_malignant)
    if label == "normal" and band.code == "3" and p_malignant < normal_ceiling and p_malignant < threshold:
        return dataclasses.replace(NORMAL, high=min(normal_ceiling, band.high))
    return band


# The three ways a result reads; the page's badge, the PDF and the CLI take the tone from here, never from the
# threshold alone, so a 4A-4C estimate below the threshold is never shown as reassuring.
FLAGGED, BIOPSY_RANGE, NOT_FLAGGED = "flagged", "biopsy_range", "not_flagged"
BIOPSY_CODES = frozenset({"4A", "4B", "4C", "5"})
TONE_BADGES = {FLAGGED: "Flagged: above threshold", BIOPSY_RANGE: "Biopsy range: not reassuring",
               NOT_FLAGGED: "Not flagged"}
TONE_COLOURS = {FLAGGED: "red", BIOPSY_RANGE: "orange", NOT_FLAGGED: "green"}  # the badge's colour on the page


def decision_tone(p_malignant: float, threshold: float, category: LikelihoodCategory) -> str:
    """FLAGGED at or above the threshold; BIOPSY_RANGE below it but in a band where biopsy is usually
    recommended (BI-RADS 4A and up, > 2%); NOT_FLAGGED only in the normal and BI-RADS 3 wording."""
    if p_malignant >= threshold:
        return FLAGGED
    return BIOPSY_RANGE if category.code in BIOPSY_CODES else NOT_FLAGGED


def decision_sentence(p_malignant: float, threshold: float, category: LikelihoodCategory) -> str:
    """The one sentence that states the decision (page, PDF and CLI show it), consistent with the category."""
    p, t = format_probability(p_malignant), format_probability(threshold)
    tone = decision_tone(p_malignant, threshold, category)
    if tone == FLAGGED:
        return f"P(malignant) {p} is at or above the operating threshold {t}: flagged as suspicious for malignancy"
    if tone == BIOPSY_RANGE:
        return (f"P(malignant) {p} is below the operating threshold {t}, but in the BI-RADS {category.code} range, "
                "where biopsy is usually recommended: not a reassuring result; decide on the whole examination")
    return (f"P(malignant) {p} is below the operating threshold {t} and at most {format_probability(category.high)}"
            " (the BI-RADS 3 range or lower): not flagged")
