"""Priorities an operator types: 0 (none) or 1 (runs first) up to ``MAX_PRIORITY``, the limit
Corral and BullMQ share."""

from __future__ import annotations

MAX_PRIORITY = 2**21


def parse_priority(text: str) -> int:
    """``" 3 "`` -> ``3``. Raises ``ValueError`` saying what is wrong."""
    value = text.strip()
    if not value.isdigit() or int(value) > MAX_PRIORITY:
        raise ValueError(
            f"priority {text!r} is invalid: expected a whole number from 0 (none) to "
            f"{MAX_PRIORITY}; 1 runs first"
        )
    return int(value)


def priority_error(text: str) -> str | None:
    """What is wrong with ``text`` as a priority, or None (for a prompt's check)."""
    try:
        parse_priority(text)
    except ValueError as exc:
        return str(exc)
    return None
