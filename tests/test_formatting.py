"""Numbers for people: probabilities never claim certainty, and a missing value always prints the same way."""

from __future__ import annotations

import pytest

from medapp.formatting import MISSING, format_number, format_percent, format_probability


@pytest.mark.parametrize(("p", "text"), [(0.0, "<1%"), (0.004, "<1%"), (0.01, "1%"), (0.335, "34%"), (0.99, "99%"),
                                         (0.9986, ">99%"), (1.0, ">99%")])
def test_format_probability_never_claims_certainty(p, text):
    assert format_probability(p) == text


@pytest.mark.parametrize("missing", [None, float("nan")])
def test_missing_values_print_one_way(missing: float | None) -> None:
    assert format_number(missing) == format_percent(missing) == format_probability(missing) == MISSING == "n/a"


def test_numbers_and_percentages() -> None:
    assert format_number(0.92439) == "0.924" and format_number(1.33265, 2) == "1.33"
    assert format_percent(0.7381) == "73.8%" and format_percent(1.0, 0) == "100%"
