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


# ``high`` is the model card's ``serving.normal_ceiling`` (see :func:`categorize_likelihood`); 0.10 here, the top
# of the 4A band, only for listing the categories.
NORMAL = LikelihoodCategory(
    "normal", "Model estimate: normal-appearing breast tissue, no mass found (low likelihood of malignancy)",
    0.0, 0.10, 0,
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

    "normal" replaces the band only when the top class is normal and P(malignant) is below the operating
    ``threshold`` and below the card's ``normal_ceiling``, so a sizeable malignancy estimate is never hidden
    behind the word "normal".
    """
    band = band_for(p_malignant)
    if label == "normal" and p_malignant < normal_ceiling and p_malignant < threshold:
        return dataclasses.replace(NORMAL, high=normal_ceiling)
    return band


def decision_sentence(p_malignant: float, threshold: float) -> str:
    """The one sentence that states the decision at the operating threshold (page, PDF and CLI show it)."""
    where = "at or above" if p_malignant >= threshold else "below"
    outcome = "flagged as suspicious for malignancy" if p_malignant >= threshold else "not flagged"
    return (f"P(malignant) {format_probability(p_malignant)} is {where} the operating threshold "
            f"{threshold:.0%}: {outcome}")
