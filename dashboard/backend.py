"""The small interface a queue layout offers the dashboard: discovery, reads, events, actions.

The monitor, the actions and the screens know only ``Backend``; ``CorralBackend`` implements it
for the engine's own layout, and other layouts can implement it beside it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from redis.asyncio import Redis

from dashboard.model import (
    ActiveJob,
    Breach,
    Event,
    JobDetail,
    JobLinks,
    JobPage,
    MinuteHistory,
    ReplayOutcome,
    SchedulerPage,
    StateCounts,
    WorkerRow,
)
from engine.health import Thresholds

FLOW_PATH_MAX = 100
"""Parent links followed at most when looking for the root of a job's flow."""


class FeatureUnavailable(RuntimeError):
    """A read this backend cannot do for its queues (yet): views report it, the monitor goes
    on without it; nothing is made up in its place."""


class ActionRefused(Exception):
    """An action did not apply, e.g. the job is no longer in the state it needs."""

    def __init__(self, message: str, state: str | None = None) -> None:
        super().__init__(message)
        self.state = state


@dataclass(frozen=True, slots=True)
class QueueReading:
    """What one counts round trip tells about a queue."""

    name: str
    counts: StateCounts
    paused: bool
    completed_total: int
    failed_total: int
    workers: int | None
    oldest_wait_ms: int | None = None  # how long the next job to run has waited (server clock)
    breaker: str | None = None  # "open" or "half-open" while a circuit breaker holds the queue
    breaker_reason: str = ""
    dead_letter: bool = False  # a dead-letter queue (its failed jobs are dead letters)


class Backend(Protocol):
    """Reads and changes the queues of one layout under one key prefix.

    Reads take the client to use, so the caller decides which connection serves what.
    """

    prefix: str

    async def discover_queues(self, client: Redis) -> list[str]:
        """Names of every queue under the prefix, found with a cursored SCAN."""
        ...

    async def read_counts(self, client: Redis, queues: Sequence[str]) -> dict[str, QueueReading]:
        """Counts, paused flag, finished totals and workers of many queues in one round trip."""
        ...

    async def read_page(
        self, client: Redis, queue: str, state: str, start: int, count: int
    ) -> JobPage:
        """``count`` jobs of ``state`` from index ``start``; a bounded range read."""
        ...

    async def read_job(self, client: Redis, queue: str, job_id: str) -> JobDetail | None:
        """One job with its state and logs, flagged malformed if its hash is not a job."""
        ...

    async def read_active(
        self, client: Redis, queue: str, start: int, count: int
    ) -> tuple[list[ActiveJob], int]:
        """Active jobs longest-running first, with their lock state; and the active count."""
        ...

    def events_key(self, queue: str) -> str:
        """The key of the queue's events stream."""
        ...

    def parse_event(self, queue: str, entry_id: str, fields: Mapping[str, str]) -> Event:
        """One stream entry as an ``Event``."""
        ...

    def tally_events(self, queue: str, counts: Mapping[str, int]) -> None:
        """How many entries of each event name were just read from the queue's stream (every
        entry is counted here once, also those never parsed into an ``Event``)."""
        ...

    def keyspace_pattern(self, db: int) -> str:
        """PSUBSCRIBE pattern matching keyspace notifications of every queue's keys."""
        ...

    def queue_of_channel(self, channel: str) -> str | None:
        """The queue a keyspace notification channel is about, or None."""
        ...

    async def count_finished(
        self, client: Redis, queue: str, state: str, older_than_ms: int
    ) -> int:
        """How many completed or failed jobs finished more than ``older_than_ms`` ago."""
        ...

    async def cancel_job(self, client: Redis, queue: str, job_id: str, by: str) -> bool:
        """Cancel a waiting or running job (it ends failed, "cancelled by <by>", not retried).

        True when it is failed already; False when its worker was asked to stop it. Raises
        ``ActionRefused`` naming the state of a job that has finished.
        """
        ...

    async def retry_job(
        self, client: Redis, queue: str, job_id: str, state: str = "failed"
    ) -> None:
        """Send a failed (or completed) job back to wait; ``ActionRefused`` naming its state
        if it is no longer in ``state``."""
        ...

    async def read_job_ids(
        self, client: Redis, queue: str, state: str, start: int, count: int
    ) -> list[str]:
        """``count`` ids of ``state`` from index ``start``, in page order; one bounded range
        read (the ids a bulk action will act on, read page by page)."""
        ...

    async def retry_job_ids(
        self, client: Redis, queue: str, job_ids: Sequence[str], state: str
    ) -> dict[str, str | None]:
        """Retry exactly these jobs, those still in ``state`` (one state-guarded script per
        engine batch); the ones not retried, each with the state it is in now (None: gone)."""
        ...

    async def replay_dead_letters(
        self, client: Redis, queue: str, ids: Sequence[str] | None, count: int | None
    ) -> ReplayOutcome:
        """On a dead-letter queue: send exactly ``ids`` (or else the oldest ``count``) back to
        the queues they came from with fresh attempts, in bounded batches."""
        ...

    async def remove_job(self, client: Redis, queue: str, job_id: str) -> None:
        """Delete a job that is not active; ``ActionRefused`` otherwise."""
        ...

    async def promote_job(self, client: Redis, queue: str, job_id: str) -> None:
        """Make a delayed job ready now; ``ActionRefused`` if it is not delayed."""
        ...

    async def promote_all(self, client: Redis, queue: str, count: int) -> int:
        """Make up to ``count`` delayed jobs ready now; return how many were promoted."""
        ...

    async def change_priority(self, client: Redis, queue: str, job_id: str, priority: int) -> None:
        """Give a job that is not running a new priority (0 = none, 1 = runs first);
        ``ActionRefused`` naming its state if it is running or finished."""
        ...

    async def reset_breaker(self, client: Redis, queue: str) -> bool:
        """Close the queue's circuit breaker now (operator override); True if it was open or
        half-open."""
        ...

    async def remove_breaker(self, client: Redis, queue: str) -> bool:
        """Take the circuit breaker off the queue, closing it first; True if it had one."""
        ...

    async def pause(self, client: Redis, queue: str) -> None:
        """Stop workers taking jobs from the queue."""
        ...

    async def resume(self, client: Redis, queue: str) -> None:
        """Let workers take jobs again."""
        ...

    async def clean(
        self, client: Redis, queue: str, state: str, grace_ms: int, limit: int
    ) -> list[str]:
        """Remove up to ``limit`` completed or failed jobs older than ``grace_ms``."""
        ...

    # -- flows, workers, schedulers, metrics (read-only) --------------------------------------

    async def read_job_links(
        self, client: Redis, queue: str, job_id: str, max_children: int
    ) -> JobLinks | None:
        """A job's parent and its first ``max_children`` children, each with name and state.

        None if the job does not exist. ``has_children`` of each link says whether that job has
        children of its own, and ``more_children`` whether the job has more than were read.
        Bounded: one level up and one down, never a whole list or set beyond a flow's own.
        """
        ...

    async def read_flow_path(self, client: Redis, queue: str, job_id: str) -> list[tuple[str, str]]:
        """``(queue, job id)`` from the root of the job's flow down to the job itself.

        Just the job when it has no parent; at most ``FLOW_PATH_MAX`` entries (the deepest
        ones when a flow is deeper, or parent links loop).
        """
        ...

    async def read_workers(self, client: Redis, queues: Sequence[str]) -> list[WorkerRow]:
        """The live workers of each of ``queues`` (a worker that died drops out when its
        heartbeat expires), grouped by queue in the order given, oldest first in each."""
        ...

    async def read_schedulers(
        self, client: Redis, queue: str, start: int, count: int
    ) -> SchedulerPage:
        """``count`` job schedulers of the queue from index ``start``, soonest next run first
        (ended ones last), each with the state of the newest job it created; a record that
        cannot be read is a row with ``malformed`` set. Bounded range reads only."""
        ...

    async def read_breaches(
        self, client: Redis, queues: Sequence[str], limits: Thresholds
    ) -> list[Breach]:
        """Each threshold the queues pass, with the line ``corral check`` prints for it (the
        same measures: ``engine.health``). Bounded reads per queue."""
        ...

    async def read_minute_history(
        self, client: Redis, queues: Sequence[str], minutes: int
    ) -> MinuteHistory:
        """Completed and failed jobs per minute of each queue over the last ``minutes``
        minutes, the current one included (server clock); minutes with nothing recorded, or
        whose record expired, count 0. Bounded: one small read per queue, kind and minute."""
        ...


@runtime_checkable
class PromotesJobIds(Protocol):
    """A backend that promotes a batch of given delayed jobs in one call (``promote all`` uses
    it when there; others are asked one job at a time with ``promote_job``)."""

    async def promote_job_ids(
        self, client: Redis, queue: str, job_ids: Sequence[str]
    ) -> dict[str, str | None]:
        """Promote exactly these jobs, each only if still delayed (atomically per job); the
        ones not promoted, each with the state it is in now (None: gone)."""
        ...
