"""Per-minute metrics: how many jobs completed or failed each minute, and how long they ran and
waited (percentiles from fixed latency histograms), read from the hashes the finishing scripts
write (``record_metrics`` in ``_common.lua``).

Each minute of each kind is one hash, ``<prefix>:{queue}:metrics:<kind>:<minute ms>``, that
expires ``window`` ms after its minute ends, so Redis keeps a bounded history on its own.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from redis.asyncio import Redis

from .errors import InvalidJobOptions
from .keys import QueueKeys

MetricsKind = Literal["completed", "failed"]
KINDS: tuple[MetricsKind, ...] = ("completed", "failed")
MINUTE_MS = 60_000
DEFAULT_WINDOW_MS = 24 * 3600 * 1000  # how long the worker's scripts keep each minute
MAX_WINDOW_MS = 31 * 24 * 3600 * 1000
MAX_MINUTES = 7 * 24 * 60 + 1  # minutes one get_metrics call may read
_PIPELINE_CHUNK = 1_000
_BUCKET_FIELD = re.compile(r"^([pw])(\d+)$")


def validate_window(window: object) -> int:
    """The metrics window in ms (0 = record no metrics), or ``InvalidJobOptions``."""
    if not isinstance(window, int) or isinstance(window, bool) or not 0 <= window <= MAX_WINDOW_MS:
        raise InvalidJobOptions(
            f"metrics_window={window!r} is invalid: expected ms from 0 (off) to {MAX_WINDOW_MS}"
        )
    return window


def bucket_of(ms: int) -> int:
    """The histogram bucket of a duration in whole ms (the same rule as ``latency_bucket``)."""
    if ms < 1:
        return 0
    exp = ms.bit_length() - 1
    power = 1 << exp
    return 4 * exp + (ms - power) * 4 // power + 1


def bucket_range(bucket: int) -> tuple[int, int]:
    """The smallest and largest whole ms that fall in ``bucket``."""
    if bucket <= 0:
        return 0, 0
    exp, quarter = divmod(bucket - 1, 4)
    low = math.ceil((1 << exp) * (4 + quarter) / 4)
    high = math.ceil((1 << exp) * (5 + quarter) / 4) - 1
    return low, max(low, high)


@dataclass(frozen=True, slots=True)
class Latency:
    """A distribution of durations in ms: a histogram of bucket -> jobs, and the exact sum."""

    buckets: Mapping[int, int] = field(default_factory=dict)
    total_ms: int = 0

    @property
    def count(self) -> int:
        """How many durations were recorded."""
        return sum(self.buckets.values())

    @property
    def mean(self) -> float | None:
        """Exact mean in ms, or None when empty."""
        return self.total_ms / self.count if self.count else None

    def percentile(self, q: float) -> float | None:
        """Estimated ``q`` quantile (0 < q <= 1) in ms, interpolated inside its bucket (a
        bucket is at most 25% wide, and the true value is in it). None when empty."""
        if not 0 < q <= 1:
            raise InvalidJobOptions(f"q={q!r} is invalid: expected 0 < q <= 1")
        total = self.count
        if total == 0:
            return None
        rank = q * total
        seen = 0
        for bucket in sorted(self.buckets):
            n = self.buckets[bucket]
            if seen + n >= rank:
                low, high = bucket_range(bucket)
                return low + (high - low) * (rank - seen) / n
            seen += n
        return float(bucket_range(max(self.buckets))[1])  # pragma: no cover - rounding guard

    @property
    def p50(self) -> float | None:
        """Median estimate in ms."""
        return self.percentile(0.5)

    @property
    def p90(self) -> float | None:
        """90th percentile estimate in ms."""
        return self.percentile(0.9)

    @property
    def p99(self) -> float | None:
        """99th percentile estimate in ms."""
        return self.percentile(0.99)

    @classmethod
    def merge(cls, parts: Iterable[Latency]) -> Latency:
        """One distribution of all ``parts`` (histograms add up exactly)."""
        buckets: Counter[int] = Counter()
        total = 0
        for part in parts:
            buckets.update(part.buckets)
            total += part.total_ms
        return cls(dict(buckets), total)


@dataclass(frozen=True, slots=True)
class MetricsPoint:
    """One minute: jobs of the kind that finished in it, and how long they ran and waited."""

    minute: int
    """Start of the minute, ms (server clock)."""
    count: int
    processing: Latency
    """From the start of the attempt that finished to the finish."""
    wait: Latency
    """From when the job was first due (added, plus its delay) to the start of that attempt;
    earlier attempts and their backoff count as waiting."""


@dataclass(frozen=True, slots=True)
class Metrics:
    """``get_metrics`` result: one point per minute from ``start`` to ``end``, oldest first
    (minutes with nothing recorded, or already expired, count 0)."""

    kind: MetricsKind
    points: list[MetricsPoint]

    @property
    def count(self) -> int:
        """Jobs over the whole range."""
        return sum(p.count for p in self.points)

    @property
    def processing(self) -> Latency:
        """Processing times over the whole range."""
        return Latency.merge(p.processing for p in self.points)

    @property
    def wait(self) -> Latency:
        """Wait times over the whole range."""
        return Latency.merge(p.wait for p in self.points)


def _latencies(fields: Mapping[str, str]) -> tuple[Latency, Latency]:
    buckets: dict[str, dict[int, int]] = {"p": {}, "w": {}}
    for name, value in fields.items():
        match = _BUCKET_FIELD.match(name)
        if match:
            buckets[match.group(1)][int(match.group(2))] = int(value)
    return (
        Latency(buckets["p"], int(fields.get("p_sum", 0))),
        Latency(buckets["w"], int(fields.get("w_sum", 0))),
    )


def minutes_between(start_ms: int, end_ms: int) -> list[int]:
    """Start times of the minutes that overlap ``[start_ms, end_ms]``."""
    for name, value in (("start", start_ms), ("end", end_ms)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise InvalidJobOptions(f"{name}={value!r} is invalid: expected ms since the epoch")
    first, last = start_ms - start_ms % MINUTE_MS, end_ms - end_ms % MINUTE_MS
    if last < first:
        raise InvalidJobOptions(f"start={start_ms} is after end={end_ms}")
    count = (last - first) // MINUTE_MS + 1
    if count > MAX_MINUTES:
        raise InvalidJobOptions(
            f"start={start_ms}, end={end_ms} spans {count} minutes: at most {MAX_MINUTES} per call"
        )
    return [first + i * MINUTE_MS for i in range(count)]


async def read_metrics(
    client: Redis, keys: QueueKeys, kind: str, start_ms: int, end_ms: int
) -> Metrics:
    """Read the minutes of ``kind`` between ``start_ms`` and ``end_ms`` (bounded pipelines)."""
    if kind not in KINDS:
        raise InvalidJobOptions(f"kind={kind!r} is invalid: expected one of {list(KINDS)}")
    minutes = minutes_between(start_ms, end_ms)
    hashes: list[dict[str, str]] = []
    for i in range(0, len(minutes), _PIPELINE_CHUNK):
        async with client.pipeline(transaction=False) as pipe:
            for minute in minutes[i : i + _PIPELINE_CHUNK]:
                pipe.hgetall(keys.metrics(kind, minute))
            hashes += await pipe.execute()
    points = []
    for minute, fields in zip(minutes, hashes, strict=True):
        processing, wait = _latencies(fields)
        points.append(MetricsPoint(minute, int(fields.get("count", 0)), processing, wait))
    return Metrics(kind, points)  # type: ignore[arg-type, unused-ignore]
