"""Turning job data and return values into JSON and back, with errors that name the bad path."""

from __future__ import annotations

import json
import math
from typing import Any

from .errors import InvalidJobData, PayloadTooLarge

DEFAULT_MAX_PAYLOAD = 512 * 1024  # bytes of serialized data per job (and per return value)

_SCALARS = (str, int, bool, type(None))


def _check(value: Any, path: str, seen: set[int]) -> None:
    if isinstance(value, _SCALARS):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidJobData(f"{path}: {value!r} is not valid JSON (NaN and infinity are not)")
        return
    if isinstance(value, dict | list | tuple):
        if id(value) in seen:
            raise InvalidJobData(f"{path}: circular reference")
        seen.add(id(value))
        if isinstance(value, dict):
            for key, item in value.items():
                if not isinstance(key, str):
                    raise InvalidJobData(
                        f"{path}: key {key!r} is a {type(key).__name__}; JSON object keys must "
                        "be strings (a non-string key would silently come back as a string)"
                    )
                _check(item, f"{path}[{key!r}]", seen)
        else:
            for index, item in enumerate(value):
                _check(item, f"{path}[{index}]", seen)
        seen.discard(id(value))
        return
    raise InvalidJobData(
        f"{path}: {type(value).__name__} is not JSON-serializable "
        "(use str, int, float, bool, None, list or dict)"
    )


def dumps(value: Any, *, what: str = "data", limit: int = DEFAULT_MAX_PAYLOAD) -> str:
    """Serialize ``value`` to compact JSON; raise if it is not plain JSON or over ``limit``."""
    if value is None and limit >= 4:  # most processors return nothing: no encoder needed
        return "null"
    try:
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError):
        _check(value, what, set())
        raise  # _check names the problem; anything it misses still surfaces
    if isinstance(value, dict | list | tuple):
        _check(value, what, set())  # catches non-str keys that json.dumps coerces silently
    size = len(text.encode("utf-8"))
    if size > limit:
        raise PayloadTooLarge(f"{what} is {size} bytes serialized; the limit is {limit} bytes")
    return text


def loads(text: str) -> Any:
    """Parse JSON written by ``dumps``."""
    return json.loads(text)
