"""Server replies as the BullMQ backend uses them: text whether or not the client decodes, and
integers that may be missing or not numbers at all (BullMQ data written by anything)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from dashboard.sanitize import from_redis


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
        return tuple((from_redis(k), from_redis(v)) for k, v in reply)
    return tuple(
        (from_redis(k), from_redis(v)) for k, v in zip(reply[::2], reply[1::2], strict=True)
    )


def server_ms(reply: Any) -> int:
    """A TIME reply in ms; this machine's clock where TIME was refused (it is not in ACL's
    ``@read``), so the reply is the exception a pipeline returned instead."""
    if isinstance(reply, BaseException):
        return int(time.time() * 1000)
    seconds, micros = reply
    return int(seconds) * 1000 + int(micros) // 1000


def int_field(fields: Mapping[str, str], name: str, bad: type[ValueError]) -> int | None:
    """Field ``name`` of a hash as a whole number (``None`` when absent or empty); Lua writes
    large numbers as ``1.7e+12``, so a finite float is taken too. Anything else raises ``bad``
    naming the field."""
    raw = fields.get(name)
    if raw is None or raw == "":
        return None
    try:
        return int(raw)
    except ValueError:
        try:
            number = float(raw)
        except ValueError:
            raise bad(f"field {name!r} is not a number: {raw[:40]!r}") from None
        if number != number or number in (float("inf"), float("-inf")):
            raise bad(f"field {name!r} is not a finite number: {raw[:40]!r}") from None
        return int(number)
