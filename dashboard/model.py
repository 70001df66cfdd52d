"""Frozen snapshots of what the dashboard shows: queues, counts, throughput, jobs and events.

The monitor builds these and the widgets render them; nothing here does I/O or knows Textual.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from enum import StrEnum
from typing import Any

STATE_ORDER: tuple[str, ...] = (
    "wait",
    "active",
    "delayed",
    "prioritized",
    "failed",
    "completed",
    "paused",
    "waiting-children",
)
"""Job states in tab order (keys 1-8)."""


class Mode(StrEnum):
    """How fresh the numbers on screen are."""

    LIVE = "LIVE"
    POLLING = "POLLING"
    FROZEN = "FROZEN"
    DISCONNECTED = "DISCONNECTED"


@dataclass(frozen=True, slots=True)
class StateCounts:
    """How many jobs one queue holds in each state."""

    wait: int = 0
    active: int = 0
    delayed: int = 0
    prioritized: int = 0
    failed: int = 0
    completed: int = 0
    paused: int = 0
    waiting_children: int = 0

    @classmethod
    def from_mapping(cls, counts: Mapping[str, int]) -> StateCounts:
        """Build from state names as the engine spells them (``waiting-children``)."""
        return cls(**{name.replace("-", "_"): int(n) for name, n in counts.items()})

    def get(self, state: str) -> int:
        """The count of one state, by its engine name."""
        value: int = getattr(self, state.replace("-", "_"))
        return value

    def as_dict(self) -> dict[str, int]:
        """State name (engine spelling) to count, in tab order."""
        return {state: self.get(state) for state in STATE_ORDER}

    @property
    def total(self) -> int:
        """Jobs in all states together."""
        return sum(getattr(self, f.name) for f in fields(self))


@dataclass(frozen=True, slots=True)
class Event:
    """One entry of a queue's events stream, as the backend parsed it."""

    queue: str
    entry_id: str
    event: str
    job_id: str
    fields: tuple[tuple[str, str], ...] = ()

    def get(self, name: str) -> str | None:
        """An optional field of the entry (``prev``, ``failed_reason``...), or None."""
        for key, value in self.fields:
            if key == name:
                return value
        return None


@dataclass(frozen=True, slots=True)
class QueueSnapshot:
    """One queue at one moment."""

    name: str
    paused: bool = False
    counts: StateCounts = field(default_factory=StateCounts)
    completed_per_sec: float = 0.0
    failed_per_sec: float = 0.0
    history: tuple[float, ...] = ()
    """Finished jobs per second, one sample per second, oldest first."""
    workers: int | None = None
    """Live workers, or None when no worker ever registered a heartbeat."""
    oldest_wait_age_ms: int | None = None
    events_gap: bool = False
    """True once events were trimmed from the stream before the dashboard read them."""
    breaker: str | None = None
    """"open" or "half-open" while the queue's circuit breaker holds its jobs, else None."""
    breaker_reason: str = ""
    dead_letter: bool = False
    """True for a dead-letter queue: its failed jobs are dead letters, replayed to origin."""
    completed_history: tuple[float, ...] = ()
    """Completed jobs per second of this queue, oldest first (the chart of one queue)."""
    failed_history: tuple[float, ...] = ()
    hour_completed: tuple[int, ...] = ()
    """Completed jobs per minute of this queue over the last hour, oldest first."""
    hour_failed: tuple[int, ...] = ()

    @property
    def jobs_per_sec(self) -> float:
        """Completed plus failed jobs per second."""
        return self.completed_per_sec + self.failed_per_sec


@dataclass(frozen=True, slots=True)
class Breach:
    """One alert threshold passed by one queue: ``what`` (failed, waiting, wait_age, stalled,
    workers) and the line ``corral check`` prints for it."""

    queue: str
    what: str
    text: str


@dataclass(frozen=True, slots=True)
class DashboardSnapshot:
    """Everything the overview shows, at ``as_of`` (epoch seconds of the last good read)."""

    queues: tuple[QueueSnapshot, ...] = ()
    mode: Mode = Mode.POLLING
    as_of: float | None = None
    alerts: tuple[str, ...] = ()
    completed_history: tuple[float, ...] = ()
    """Completed jobs per second over all queues, oldest first."""
    failed_history: tuple[float, ...] = ()
    recent_events: tuple[Event, ...] = ()
    stalled_events: tuple[Event, ...] = ()  # kept apart, so busy queues do not push them out
    breaches: tuple[Breach, ...] = ()
    """Alert thresholds passed (``corral dash --max-waiting ...``)."""
    breaches_read: bool = False
    """True once the thresholds were measured (so no breach means none, not unknown)."""
    breaker_events: tuple[Event, ...] = ()
    """The latest circuit breaker changes (open, half-open, closed), oldest first."""
    error: str | None = None
    hour_completed: tuple[int, ...] = ()
    """Jobs completed per minute over all queues in the last hour, from the server's metrics,
    oldest first; the last minute is the current one, so far."""
    hour_failed: tuple[int, ...] = ()
    notify_flags: str | None = None
    """The server's ``notify-keyspace-events`` when CONFIG GET may read it, else None."""
    maxmemory_policy: str | None = None
    """The server's ``maxmemory-policy`` as read at the latest (re)connect (``INFO memory``,
    else ``CONFIG GET``, else ``"unknown"``); None until then."""
    replica: str | None = None
    """Why not to write to the server, read (``INFO replication``) at the latest (re)connect:
    it is a replica. None for a primary, or until then."""

    @property
    def evicting_policy(self) -> str | None:
        """The policy when it may evict keys (anything but ``noeviction``), else None."""
        policy = self.maxmemory_policy
        return policy if policy is not None and policy != "noeviction" else None

    def queue(self, name: str) -> QueueSnapshot | None:
        """The snapshot of one queue, or None if it is not (or no longer) known."""
        for queue in self.queues:
            if queue.name == name:
                return queue
        return None


@dataclass(frozen=True, slots=True)
class JobRow:
    """One line of a job table."""

    id: str
    state: str
    name: str = ""
    timestamp_ms: int | None = None
    finished_on_ms: int | None = None
    attempts_made: int = 0
    attempts: int = 1
    failed_reason: str | None = None
    malformed: bool = False
    origin_queue: str | None = None
    """On a dead letter: the queue it failed in (and ``origin_id``, its id there)."""
    origin_id: str | None = None
    progress: str | None = None
    """The job's progress as stored (JSON: a number, or an object), if it reported any."""


@dataclass(frozen=True, slots=True)
class ReplayOutcome:
    """What a replay of dead letters did: ``(dead letter id, origin queue, id there)`` of each
    one sent back, and ``(dead letter id, why)`` of each one left in place."""

    replayed: tuple[tuple[str, str, str], ...] = ()
    skipped: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class ActiveJob:
    """A job a worker holds: since when, and whether its lock still exists."""

    id: str
    name: str
    active_since_ms: int
    lock_held: bool
    worker: str | None = None


@dataclass(frozen=True, slots=True)
class JobDetail:
    """Everything known about one job; ``raw`` keeps the hash fields as read."""

    id: str
    queue: str
    state: str | None
    name: str = ""
    data: Any = None
    opts: Mapping[str, Any] = field(default_factory=dict)
    timestamp_ms: int | None = None
    processed_on_ms: int | None = None
    finished_on_ms: int | None = None
    attempts_made: int = 0
    attempts: int = 1
    progress: Any = None
    returnvalue: Any = None
    failed_reason: str | None = None
    stacktrace: tuple[str, ...] = ()
    logs: tuple[str, ...] = ()
    worker: str | None = None
    malformed: bool = False
    malformed_reason: str | None = None
    raw: tuple[tuple[str, str], ...] = ()
    sections: tuple[tuple[str, str], ...] = ()
    """Further (title, text) sections a layout knows, e.g. BullMQ's parent and children."""


@dataclass(frozen=True, slots=True)
class JobPage:
    """One page of a state's jobs; ``total`` is the state's count when the page was read."""

    queue: str
    state: str
    start: int
    rows: tuple[JobRow, ...]
    total: int

    @property
    def end(self) -> int:
        """Index (inclusive) of the last row, or ``start - 1`` for an empty page."""
        return self.start + len(self.rows) - 1


@dataclass(frozen=True, slots=True)
class JobLink:
    """A job of a flow as another job points at it (its parent, a child), with its state."""

    queue: str
    id: str
    name: str = ""
    state: str | None = None
    exists: bool = True
    """False when the job was deleted (a parent keeps the ends of children that are gone) or
    its hash cannot be read."""
    has_children: bool = False
    """True when the job has children of its own, so a tree can offer to open it."""
    failed_reason: str | None = None
    pending: bool = False
    """For a child: its parent still waits for it (it has not completed, nor been let go by a
    failure policy)."""


@dataclass(frozen=True, slots=True)
class JobLinks:
    """One job's place in a flow: its parent and its first children, one level each way."""

    job: JobLink
    parent: JobLink | None = None
    children: tuple[JobLink, ...] = ()
    more_children: bool = False
    """True when the job has more children than were read."""


@dataclass(frozen=True, slots=True)
class WorkerRow:
    """One live worker of a queue, from its heartbeat record (ms on the worker's own clock), or
    from its connection in ``CLIENT LIST`` (BullMQ: None for what that layout does not record)."""

    queue: str
    id: str
    host: str
    pid: int | None
    concurrency: int | None
    in_flight: int | None
    started_ms: int
    last_beat_ms: int
    """The last heartbeat; for a BullMQ worker, its connection's last command."""
    expires_ms: int | None
    """When the heartbeat runs out unless the worker beats again."""
    restarts: int | None = 0
    """Times its supervisor restarted it (recycled by a guard, or after a crash)."""
    name: str | None = None
    """The name the worker was given, where the layout keeps one (BullMQ's ``name`` option)."""


@dataclass(frozen=True, slots=True)
class SchedulerRow:
    """One job scheduler: its timing, where it stands, and the newest job it created."""

    id: str
    every_ms: int | None = None
    pattern: str | None = None
    tz: str | None = None
    next_run_ms: int | None = None
    """The tick of its newest job (ms); None once it has ended (limit or end date reached)."""
    iterations: int = 0
    limit: int | None = None
    end_date_ms: int | None = None
    job_name: str = ""
    last_job_id: str | None = None
    last_job_state: str | None = None
    """State of the last job; None when it no longer exists (or is in no state)."""
    earlier_jobs: tuple[tuple[str, str | None], ...] = ()
    """The jobs of the ticks before the last one, newest first: (id, state or None if gone)."""
    malformed: str | None = None
    """Why the scheduler's record could not be read, when it could not."""


@dataclass(frozen=True, slots=True)
class SchedulerPage:
    """A page of a queue's schedulers, soonest next run first, read at ``now_ms`` (server)."""

    queue: str
    start: int
    rows: tuple[SchedulerRow, ...]
    total: int
    now_ms: int


@dataclass(frozen=True, slots=True)
class MinuteHistory:
    """Jobs finished per minute in each queue, from the per-minute metrics on the server."""

    end_minute_ms: int
    """Start of the newest minute read (the current one, server clock)."""
    counts: Mapping[str, tuple[tuple[int, int], ...]] = field(default_factory=dict)
    """Queue -> ``(completed, failed)`` per minute, oldest first, ending at ``end_minute_ms``."""
