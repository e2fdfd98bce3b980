"""How numbers are written for people: one place, so the page, the PDF, the CLI and the README agree.

A probability shown to a clinician is a whole percentage that never reads "0%" or "100%" (a calibrated model is
not that certain); a metric is written with fixed digits; a value that does not exist (AUC of a one-class set,
PPV with nothing flagged) is written :data:`MISSING`, never "nan" or "None".
"""

from __future__ import annotations

import math
from typing import Any

MISSING = "n/a"


def is_missing(value: Any) -> bool:
    """True for None and NaN: the values that print as :data:`MISSING`."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def format_probability(p: float) -> str:
    """A probability for a clinician: a whole percentage, "<1%" and ">99%" at the ends."""
    if is_missing(p):
        return MISSING
    if p < 0.01:
        return "<1%"
    if p > 0.99:
        return ">99%"
    return f"{p:.0%}"


def format_number(value: Any, digits: int = 3) -> str:
    """A metric such as an AUC or an ECE: ``digits`` decimals."""
    return MISSING if is_missing(value) else f"{value:.{digits}f}"


def format_percent(value: Any, digits: int = 1) -> str:
    """A rate such as sensitivity: a percentage with ``digits`` decimals."""
    return MISSING if is_missing(value) else f"{value:.{digits}%}"
