"""Queue-wide rate limiting: the limit a worker applies when it takes jobs, and the manual
limit a processor sets when a downstream service pushes back.

The counting happens inside the take step of the Lua scripts (``take_jobs``), so the limit
holds across every worker on every host: at most ``max`` jobs start in each fixed window of
``duration`` ms, a window starting with the first job taken after the previous one ended.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from .errors import InvalidJobOptions
from .keys import QueueKeys

MANUAL_LIMIT = 9007199254740991  # the limiter's value during a manual limit (as in _common.lua)
MAX_LIMIT_MS = 7 * 24 * 3600 * 1000  # longest manual limit or window: a week
MAX_LIMITED_SLEEP = 30.0  # seconds a limited worker sleeps before it asks again, at most


def _ms(name: str, value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_LIMIT_MS:
        raise InvalidJobOptions(
            f"{name}={value!r} is invalid: expected an int of ms from 1 to {MAX_LIMIT_MS}"
        )
    return value


@dataclass(frozen=True, slots=True)
class RateLimit:
    """At most ``max`` jobs start per ``duration`` ms, across all workers of the queue."""

    max: int
    duration: int

    def __post_init__(self) -> None:
        if not isinstance(self.max, int) or isinstance(self.max, bool) or self.max < 1:
            raise InvalidJobOptions(f"limiter max={self.max!r} is invalid: expected an int >= 1")
        _ms("limiter duration", self.duration)

    @classmethod
    def build(cls, value: RateLimit | Mapping[str, Any] | None) -> RateLimit | None:
        """Accept ``{"max": N, "duration": ms}`` (or a ``RateLimit``, or None for no limit)."""
        if value is None or isinstance(value, RateLimit):
            return value
        if not isinstance(value, Mapping) or set(value) != {"max", "duration"}:
            raise InvalidJobOptions(
                f"limiter={value!r} is invalid: expected {{'max': jobs, 'duration': ms}}"
            )
        return cls(value["max"], value["duration"])


def manual_limit_ms(ms: object) -> int:
    """Validate the length of a manual rate limit."""
    return _ms("rate limit ms", ms)


async def rate_limit_ttl(client: Redis, keys: QueueKeys, max_jobs: int | None = None) -> int:
    """Ms until the queue's rate limiter lets jobs through again, 0 if it does now.

    With ``max_jobs``, a window counts as full once it holds that many jobs; without, only a
    manual limit counts (the ms left of a counting window are not a wait on their own)."""
    if max_jobs is not None and (not isinstance(max_jobs, int) or max_jobs < 1):
        raise InvalidJobOptions(f"max_jobs={max_jobs!r} is invalid: expected an int >= 1")
    async with client.pipeline(transaction=True) as pipe:
        pipe.get(keys.limiter)
        pipe.pttl(keys.limiter)
        raw, ttl = await pipe.execute()
    count = int(raw or 0)
    full = count >= MANUAL_LIMIT or (max_jobs is not None and count >= max_jobs)
    return int(ttl) if full and int(ttl) > 0 else 0
