"""One lesion's estimate from its views: the rule the app applies when a clinician groups images into one lesion.

Chosen on BUS-BRA validation by :mod:`medapp.evaluation.lesion_views` (docs/design_choices.md, "One lesion, several
views"): the mean of the views' log-odds, which treats the views as evidence of equal weight.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

RULES = ("mean", "max", "logit_mean")
DEFAULT_RULE = "logit_mean"
_EPS = 1e-6


def combine_views(p_malignant: Sequence[float], rule: str = DEFAULT_RULE) -> float:
    """One lesion's P(malignant) from its views' calibrated estimates.

    ``mean``: the average probability; ``max``: the most suspicious view (a cancer seen in one plane only still
    counts); ``logit_mean``: the average log-odds (the views as independent evidence of equal weight).
    """
    p = np.asarray(p_malignant, dtype=np.float64)
    if p.size == 0 or not np.isfinite(p).all() or (p < 0).any() or (p > 1).any():
        raise ValueError("combine_views needs one or more probabilities in [0, 1]")
    if rule == "mean":
        return float(p.mean())
    if rule == "max":
        return float(p.max())
    if rule == "logit_mean":
        q = np.clip(p, _EPS, 1 - _EPS)
        return float(1 / (1 + np.exp(-np.log(q / (1 - q)).mean())))
    raise ValueError(f"unknown rule {rule!r}; choose one of {', '.join(RULES)}")
