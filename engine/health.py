"""Queue health against alert thresholds, for ``corral check`` (and anything else that alerts).

For each queue, a few bounded reads measure:

- **failed**: jobs that failed for good in the last ``window``: the larger of the retained
  failed jobs finished in the window (``ZCOUNT failed``) and the ``failed`` events in the window
  (which also count jobs that retention removed at once);
- **waiting**: ready jobs not running: ``wait`` + ``paused`` + ``prioritized``;
- **oldest wait**: how long the next job to run (head of ``wait``, ``paused`` and
  ``prioritized``) has existed, on the server clock;
- **stalled**: distinct jobs that are active without a lock now (the first 1,000 active jobs are
  checked) or had a ``stalled`` event in the window;
- **workers**: live workers (heartbeat not expired).

The events of the window are read in pages of ``EVENT_PAGE`` entries, at most
``MAX_EVENTS_READ`` of them; past that the failed and stalled numbers are lower bounds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from .errors import InvalidJobOptions
from .keys import QueueKeys

EVENT_PAGE = 1_000
MAX_EVENTS_READ = 20_000
ACTIVE_CHECKED = 1_000
DEFAULT_WINDOW_MS = 15 * 60_000


@dataclass(frozen=True, slots=True)
class Thresholds:
    """Limits that are breached when passed (``None`` = not checked)."""

    max_failed: int | None = None
    window_ms: int = DEFAULT_WINDOW_MS
    max_waiting: int | None = None
    max_wait_age_ms: int | None = None
    max_stalled: int | None = None
    min_workers: int | None = None

    def __post_init__(self) -> None:
        for name in ("max_failed", "max_waiting", "max_wait_age_ms", "max_stalled", "min_workers"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 0):
                raise InvalidJobOptions(f"{name}={value!r} is invalid: expected an integer >= 0")
        if not isinstance(self.window_ms, int) or self.window_ms < 1000:
            raise InvalidJobOptions(f"window_ms={self.window_ms!r}: expected at least 1000 ms")

    @property
    def any(self) -> bool:
        """True when at least one threshold is set."""
        limits = (self.max_failed, self.max_waiting, self.max_wait_age_ms, self.max_stalled)
        return any(x is not None for x in limits) or self.min_workers is not None


@dataclass(frozen=True, slots=True)
class QueueHealth:
    """What ``read_health`` measured for one queue."""

    queue: str
    failed: int
    waiting: int
    oldest_wait_ms: int | None
    stalled: int
    workers: int
    window_ms: int


@dataclass(frozen=True, slots=True)
class Breach:
    """One threshold passed by one queue; ``str()`` is the line ``corral check`` prints."""

    queue: str
    what: str
    value: int
    limit: int
    text: str

    def __str__(self) -> str:
        return f"{self.queue}: {self.text}"


def _minutes(ms: int) -> str:
    return f"{ms / 60_000:g} min"


def _jobs(n: int) -> str:
    return f"{n} job" if n == 1 else f"{n} jobs"


def breaches(health: QueueHealth, limits: Thresholds) -> list[Breach]:
    """The thresholds ``health`` passes, in a fixed order."""
    out: list[Breach] = []
    q, window = health.queue, _minutes(health.window_ms)
    if limits.max_failed is not None and health.failed > limits.max_failed:
        text = f"{_jobs(health.failed)} failed in the last {window} (limit {limits.max_failed})"
        out.append(Breach(q, "failed", health.failed, limits.max_failed, text))
    if limits.max_waiting is not None and health.waiting > limits.max_waiting:
        text = f"{_jobs(health.waiting)} waiting (limit {limits.max_waiting})"
        out.append(Breach(q, "waiting", health.waiting, limits.max_waiting, text))
    age = health.oldest_wait_ms
    if limits.max_wait_age_ms is not None and age is not None and age > limits.max_wait_age_ms:
        text = (
            f"the oldest waiting job has waited {age / 1000:.0f} s "
            f"(limit {limits.max_wait_age_ms / 1000:g} s)"
        )
        out.append(Breach(q, "wait_age", age, limits.max_wait_age_ms, text))
    if limits.max_stalled is not None and health.stalled > limits.max_stalled:
        text = (
            f"{_jobs(health.stalled)} stalled (now or in the last {window}; "
            f"limit {limits.max_stalled})"
        )
        out.append(Breach(q, "stalled", health.stalled, limits.max_stalled, text))
    if limits.min_workers is not None and health.workers < limits.min_workers:
        live = "1 live worker" if health.workers == 1 else f"{health.workers} live workers"
        text = f"{live} (minimum {limits.min_workers})"
        out.append(Breach(q, "workers", health.workers, limits.min_workers, text))
    return out


async def discover_queues(client: Redis, prefix: str) -> list[str]:
    """Every queue under ``prefix`` (by its ``meta`` key)."""
    found: set[str] = set()
    async for key in client.scan_iter(match=QueueKeys.meta_pattern(prefix), count=500):
        keys = QueueKeys.from_meta_key(str(key), prefix)
        if keys is not None:
            found.add(keys.queue)
    return sorted(found)


async def queue_exists(client: Redis, keys: QueueKeys) -> bool:
    """True if the queue has a ``meta`` key (it had a job added, or was paused)."""
    return bool(await client.exists(keys.meta))


async def _server_ms(client: Redis) -> int:
    seconds, micros = await client.time()
    return int(seconds) * 1000 + int(micros) // 1000


async def _events_in_window(client: Redis, keys: QueueKeys, since_ms: int) -> tuple[int, set[str]]:
    """``failed`` events and the job ids of ``stalled`` events since ``since_ms``."""
    failed, stalled = 0, set()
    start, read = f"{since_ms}-0", 0
    while read < MAX_EVENTS_READ:
        entries: Any = await client.xrange(keys.events, min=start, count=EVENT_PAGE)
        for _id, fields in entries:
            if fields.get("event") == "failed":
                failed += 1
            elif fields.get("event") == "stalled" and fields.get("job_id"):
                stalled.add(str(fields["job_id"]))
        read += len(entries)
        if len(entries) < EVENT_PAGE:
            break
        start = f"({entries[-1][0]}"
    return failed, stalled


async def read_health(client: Redis, keys: QueueKeys, window_ms: int) -> QueueHealth:
    """Measure one queue (see the module docstring)."""
    now = await _server_ms(client)
    since = now - window_ms
    async with client.pipeline(transaction=False) as pipe:
        pipe.zcount(keys.failed, since, "+inf")
        pipe.llen(keys.wait)
        pipe.llen(keys.paused)
        pipe.zcard(keys.prioritized)
        pipe.lindex(keys.wait, -1)  # the right end of the lists is the head
        pipe.lindex(keys.paused, -1)
        pipe.zrange(keys.prioritized, 0, 0)
        pipe.zrange(keys.active, 0, ACTIVE_CHECKED - 1)
        pipe.zcount(keys.workers, now, "+inf")  # scored by expiry (server clock)
        replies: list[Any] = await pipe.execute()
    failed_kept, wait, paused, prioritized, head_w, head_p, head_z, active, workers = replies
    heads = [h for h in (head_w, head_p, *head_z) if h]
    async with client.pipeline(transaction=False) as pipe:
        for job_id in heads:
            pipe.hget(keys.job(str(job_id)), "timestamp")
        for job_id in active:
            pipe.exists(keys.lock(str(job_id)))
        found: list[Any] = await pipe.execute() if heads or active else []
    stamps = [int(s) for s in found[: len(heads)] if s is not None and str(s).isdigit()]
    unlocked = {str(j) for j, held in zip(active, found[len(heads) :], strict=True) if not held}
    failed_events, stalled_events = await _events_in_window(client, keys, since)
    return QueueHealth(
        queue=keys.queue,
        failed=max(int(failed_kept), failed_events),
        waiting=int(wait) + int(paused) + int(prioritized),
        oldest_wait_ms=max(now - min(stamps), 0) if stamps else None,
        stalled=len(unlocked | stalled_events),
        workers=int(workers),
        window_ms=window_ms,
    )


async def check_queues(
    client: Redis, queues: Sequence[str], limits: Thresholds, prefix: str
) -> tuple[list[QueueHealth], list[Breach]]:
    """Measure every queue and list the breaches, queue by queue."""
    healths = [await read_health(client, QueueKeys(q, prefix), limits.window_ms) for q in queues]
    return healths, [b for h in healths for b in breaches(h, limits)]
