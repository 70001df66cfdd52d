"""Server replies as the BullMQ backend uses them: text whether or not the client decodes, and
integers that may be missing or not numbers at all (BullMQ data written by anything)."""

from __future__ import annotations

from typing import Any


def as_text(value: str | bytes) -> str:
    """``value`` as ``str``; undecodable bytes are shown escaped, never raised on."""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="backslashreplace")
    return value


def as_int(raw: Any) -> int | None:
    """An integer reply or field, or None when it is missing or not an integer."""
    if raw is None or raw == "":
        return None
    try:
        return int(raw)
    except (TypeError, ValueError):
        return None


def as_pairs(reply: Any) -> tuple[tuple[str, str], ...]:
    """HRANDFIELD ... WITHVALUES as (field, value) pairs, whether flat or nested."""
    if not reply:
        return ()
    if isinstance(reply[0], list | tuple):
        return tuple((as_text(k), as_text(v)) for k, v in reply)
    return tuple((as_text(k), as_text(v)) for k, v in zip(reply[::2], reply[1::2], strict=True))
