"""The one duration grammar of every flag and policy document: 250ms, 30s, 10m, 1h30m, 2d, 90."""

from __future__ import annotations

import argparse
import re

HELP = "a duration such as 250ms, 30s, 10m, 1h30m or 2d (a plain number is seconds)"
UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
# Nine digits a part: enough for any sane duration, and no number too long to convert.
MAX_NUMBER = 999_999_999

_NUMBER = r"\d{1,9}(?:\.\d{1,9})?"
_UNIT = "|".join(sorted(UNITS, key=len, reverse=True))  # "ms" before "m"
_TEXT = re.compile(rf"{_NUMBER}|(?:{_NUMBER}(?:{_UNIT}))+")
_PART = re.compile(rf"({_NUMBER})({_UNIT})")


def parse(value: object) -> float:
    """Seconds (0 or more) from text in the grammar or a number of seconds.

    ValueError for text outside the grammar or a number out of range, TypeError for
    anything else (booleans included: YAML's `true` is no duration).
    """
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise TypeError(f"expected {HELP}")
    if isinstance(value, str):
        if not _TEXT.fullmatch(value):
            raise ValueError(f"expected {HELP}")
        if value[-1].isdigit():
            return float(value)
        return sum(float(number) * UNITS[unit] for number, unit in _PART.findall(value))
    # Compared before any float(): YAML can hold a 4000-digit int, and NaN fails both tests.
    if not 0 <= value <= MAX_NUMBER:
        raise ValueError(f"expected {HELP}")
    return float(value)


def argument(text: str) -> float:
    """`parse` as an argparse type: a bad flag value is a usage error naming the flag."""
    try:
        return parse(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not {HELP}") from None
