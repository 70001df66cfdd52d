"""Ages an operator types ("90s", "15m", "2h", "7d", "0") turned into milliseconds."""

from __future__ import annotations

import re

import humanize

_AGE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$", re.IGNORECASE)
_UNIT_MS = {"ms": 1, "s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}


def parse_age(text: str) -> int:
    """``"15m"`` -> ``900000``; a bare number is seconds. Raises ``ValueError`` saying why."""
    match = _AGE.match(text)
    if match is None:
        raise ValueError(
            f"age {text!r} is invalid: expected a number and a unit, e.g. 30s, 15m, 2h, 7d or 0"
        )
    number, unit = float(match.group(1)), (match.group(2) or "s").lower()
    return round(number * _UNIT_MS[unit])


def age_error(text: str) -> str | None:
    """What is wrong with ``text`` as an age, or None (for a prompt's check)."""
    try:
        parse_age(text)
    except ValueError as exc:
        return str(exc)
    return None


def describe_age(ms: int) -> str:
    """``900000`` -> ``"15 minutes"``; 0 -> ``"any age"``."""
    if ms <= 0:
        return "any age"
    return str(humanize.precisedelta(ms / 1000, minimum_unit="seconds", format="%0.0f"))


MIN_STUCK_MS = 1_000


def stuck_error(text: str) -> str | None:
    """What is wrong with ``text`` as a stuck threshold (an age of at least 1 s), or None."""
    error = age_error(text)
    if error is None and parse_age(text) < MIN_STUCK_MS:
        return f"stuck threshold {text.strip()!r} is invalid: expected at least 1s, e.g. 90s or 5m"
    return error
