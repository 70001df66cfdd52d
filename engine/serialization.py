"""Turning job data and return values into JSON and back, with errors that name the bad path."""

from __future__ import annotations

import json
import math
from typing import Any

from .errors import InvalidJobData, PayloadTooLarge

DEFAULT_MAX_PAYLOAD = 512 * 1024  # bytes of serialized data per job (and per return value)

_SCALARS = (int, bool, type(None))


class _Invalid(Exception):
    """A value that is not plain JSON: ``problem`` and the keys leading to it, innermost first
    (the path is built only for the error, not for every value checked)."""

    def __init__(self, problem: str) -> None:
        super().__init__(problem)
        self.problem = problem
        self.keys: list[str] = []


def _walk(value: Any, seen: set[int]) -> int:
    """A lower bound of ``value``'s size serialized, in bytes: its strings and keys with their
    quotes, one byte per other scalar, brackets, colons and commas (escapes and characters
    beyond ASCII take more bytes, never fewer). Raises ``_Invalid`` on the first value that is
    not plain JSON."""
    if isinstance(value, str):
        return len(value) + 2
    if isinstance(value, _SCALARS):
        return 1
    if isinstance(value, float):
        if not math.isfinite(value):
            raise _Invalid(f"{value!r} is not valid JSON (NaN and infinity are not)")
        return 1
    if isinstance(value, dict | list | tuple):
        if id(value) in seen:
            raise _Invalid("circular reference")
        seen.add(id(value))
        least = 1 + max(1, len(value))  # the brackets and the commas between the items
        if isinstance(value, dict):
            for key, item in value.items():
                if not isinstance(key, str):
                    raise _Invalid(
                        f"key {key!r} is a {type(key).__name__}; JSON object keys must be "
                        "strings (a non-string key would silently come back as a string)"
                    )
                try:
                    least += len(key) + 3 + _walk(item, seen)
                except _Invalid as invalid:
                    invalid.keys.append(repr(key))
                    raise
        else:
            for index, item in enumerate(value):
                try:
                    least += _walk(item, seen)
                except _Invalid as invalid:
                    invalid.keys.append(str(index))
                    raise
        seen.discard(id(value))
        return least
    raise _Invalid(
        f"{type(value).__name__} is not JSON-serializable "
        "(use str, int, float, bool, None, list or dict)"
    )


def _check(value: Any, path: str) -> int:
    """``_walk``, raising ``InvalidJobData`` that names the path from ``path`` (e.g.
    ``data['when']: datetime``)."""
    try:
        return _walk(value, set())
    except _Invalid as invalid:
        where = path + "".join(f"[{key}]" for key in reversed(invalid.keys))
        raise InvalidJobData(f"{where}: {invalid.problem}") from None


def dumps(value: Any, *, what: str = "data", limit: int = DEFAULT_MAX_PAYLOAD) -> str:
    """Serialize ``value`` to compact JSON; raise if it is not plain JSON or over ``limit``.

    Data whose lower bound of size (its strings' lengths, see ``_check``) is over the limit
    already is refused before it is serialized: a 100 MB payload costs no 100 MB copy, and the
    error gives that bound ("at least N bytes"); otherwise the exact size."""
    if value is None and limit >= 4:  # most processors return nothing: no encoder needed
        return "null"
    if isinstance(value, dict | list | tuple):
        least = _check(value, what)  # also catches non-str keys json.dumps would coerce
    elif isinstance(value, str):
        least = len(value) + 2
    else:
        least = 1
    if least > limit:
        raise PayloadTooLarge(
            f"{what} is at least {least} bytes serialized; the limit is {limit} bytes"
        )
    try:
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError):
        _check(value, what)
        raise  # _check names the problem; anything it misses still surfaces
    size = len(text) if text.isascii() else len(text.encode("utf-8"))
    if size > limit:
        raise PayloadTooLarge(f"{what} is {size} bytes serialized; the limit is {limit} bytes")
    return text


def loads(text: str) -> Any:
    """Parse JSON written by ``dumps``."""
    return json.loads(text)
