"""Circuit breaker of a queue: its settings (``Breaker``), a snapshot of its state
(``BreakerState``), and how that snapshot is read in one round trip.

The breaker itself runs inside the Lua scripts (``_breaker.lua`` and the gate in
``take_jobs``), so every worker of the queue, on every host, counts into one window and obeys
one state. The settings are stored with the queue (meta field ``breaker``) for that reason: a
per-worker setting would let two workers disagree about when the queue trips.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

from redis.asyncio import Redis

from .errors import InvalidJobOptions
from .keys import QueueKeys

BUCKETS = 10  # the failure window is counted in buckets of window_ms / BUCKETS (_breaker.lua)
BreakerStateName = Literal["closed", "open", "half-open"]

_STATE_FIELDS = (
    "breaker",
    "tripped",
    "breaker_at",
    "breaker_probes",
    "breaker_passed",
    "breaker_since",
    "breaker_reason",
    "breaker_trips",
)


def _int_in(name: str, value: object, low: int, high: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise InvalidJobOptions(
            f"Breaker {name}={value!r} is invalid: expected an integer from {low} to {high}"
        )
    return value


@dataclass(frozen=True, slots=True)
class Breaker:
    """When a queue's breaker trips and how it recovers.

    It opens when at least ``min_calls`` attempts finished within the last ``window_ms`` and
    the share that failed is ``failure_rate`` or more. While open, no worker takes a job of the
    queue. After ``cooldown_ms`` it lets ``probes`` jobs run (half-open): if they all succeed it
    closes, if one fails it opens again for another cool-down.
    """

    failure_rate: float = 0.5
    min_calls: int = 20
    window_ms: int = 60_000
    cooldown_ms: int = 30_000
    probes: int = 3

    def __post_init__(self) -> None:
        rate = self.failure_rate
        if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 < rate <= 1:
            raise InvalidJobOptions(
                f"Breaker failure_rate={rate!r} is invalid: expected a number above 0, at most 1"
            )
        _int_in("min_calls", self.min_calls, 1, 1_000_000)
        _int_in("window_ms", self.window_ms, 100, 7 * 86_400_000)
        _int_in("cooldown_ms", self.cooldown_ms, 10, 7 * 86_400_000)
        _int_in("probes", self.probes, 1, 1_000)

    def to_json(self) -> str:
        """The settings as stored in the queue's meta field ``breaker``."""
        return json.dumps(
            {
                "failure_rate": float(self.failure_rate),
                "min_calls": self.min_calls,
                "window_ms": self.window_ms,
                "cooldown_ms": self.cooldown_ms,
                "probes": self.probes,
            },
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, raw: str) -> Breaker:
        """Read the stored settings back."""
        data: dict[str, Any] = json.loads(raw)
        return cls(
            failure_rate=float(data["failure_rate"]),
            min_calls=int(data["min_calls"]),
            window_ms=int(data["window_ms"]),
            cooldown_ms=int(data["cooldown_ms"]),
            probes=int(data["probes"]),
        )


@dataclass(frozen=True, slots=True)
class BreakerState:
    """A snapshot of a queue's breaker, read by ``Queue.get_breaker()``.

    ``until`` is when an open breaker lets probes through (or when a half-open round that got
    no verdict starts over); the change itself happens when a worker next asks for jobs.
    ``calls`` and ``failures`` are the attempts counted in the current window (closed only).
    """

    settings: Breaker
    state: BreakerStateName
    since: int | None = None
    reason: str | None = None
    until: int | None = None
    probes_left: int = 0
    probes_passed: int = 0
    trips: int = 0
    calls: int = 0
    failures: int = 0

    @property
    def holds_queue(self) -> bool:
        """True while the breaker stops workers from taking jobs freely (open or half-open)."""
        return self.state != "closed"


def _opt_int(raw: Any) -> int | None:
    return None if raw in (None, "") else int(raw)


def window_counts(fields: dict[str, str], window_ms: int, now_ms: int) -> tuple[int, int]:
    """(calls, failures) in the buckets of the window that ends now, as ``_breaker.lua`` sums."""
    bucket_ms = max(1, window_ms // BUCKETS)
    newest = now_ms // bucket_ms
    calls = failures = 0
    for name, value in fields.items():
        kind, _, bucket = name.partition(":")
        if not bucket.isdigit() or not newest - BUCKETS < int(bucket) <= newest:
            continue
        calls += int(value)
        if kind == "fail":
            failures += int(value)
    return calls, failures


async def read_breaker(client: Redis, keys: QueueKeys) -> BreakerState | None:
    """The breaker of the queue ``keys`` names, or None if it has none (one round trip)."""
    async with client.pipeline(transaction=True) as pipe:
        pipe.hmget(keys.meta, list(_STATE_FIELDS))
        pipe.hgetall(keys.breaker_window)
        pipe.time()
        meta, window, (seconds, micros) = await pipe.execute()
    raw, tripped, at, left, passed, since, reason, trips = meta
    if raw is None:
        return None
    settings = Breaker.from_json(raw)
    state: BreakerStateName = "closed"
    if tripped in ("open", "half-open"):
        state = tripped
    calls, failures = 0, 0
    if state == "closed":
        now = int(seconds) * 1000 + int(micros) // 1000
        calls, failures = window_counts(dict(window), settings.window_ms, now)
    return BreakerState(
        settings=settings,
        state=state,
        since=_opt_int(since),
        reason=reason or None,
        until=_opt_int(at) if state != "closed" else None,
        probes_left=int(left or 0) if state == "half-open" else 0,
        probes_passed=int(passed or 0) if state == "half-open" else 0,
        trips=int(trips or 0),
        calls=calls,
        failures=failures,
    )
