"""Option sets as ``StrEnum``s whose ``parse`` turns a bad value into a ValueError listing the valid ones."""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Self


class Choice(StrEnum):
    """Base for option sets: ``ResizePolicy.parse("squash")`` -> "unknown resize policy 'squash'; choose ..."."""

    @classmethod
    def parse(cls, value: str) -> Self:
        try:
            return cls(value)
        except ValueError as e:
            noun = re.sub(r"(?<!^)(?=[A-Z])", " ", cls.__name__).lower()
            raise ValueError(f"unknown {noun} {value!r}; choose one of: {', '.join(c.value for c in cls)}") from e
