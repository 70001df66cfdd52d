"""One typed function per Lua script: the single owner of each script's KEYS and ARGV order,
and of turning its negative return codes into exceptions that name the job and transition."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from redis.asyncio.client import Pipeline

from .deduplication import Deduplication
from .errors import JobNotActive, JobNotFound, JobStateError, LockLost, ScriptError
from .keys import QueueKeys, parse_job_key
from .metrics import DEFAULT_WINDOW_MS
from .options import Retention
from .scripts import ScriptBatch, ScriptRegistry


@dataclass(frozen=True, slots=True)
class TakenJob:
    """A job a worker just made active: its id, lock token and hash fields."""

    id: str
    token: str
    fields: dict[str, str]


@dataclass(frozen=True, slots=True)
class Taken:
    """What a fetch returned: the jobs taken, ms until the next delayed job (-1 = none), and
    ms until the rate limiter lets jobs through again (0 = not limited)."""

    jobs: list[TakenJob]
    next_delay_ms: int
    rate_limit_ms: int = 0


@dataclass(frozen=True, slots=True)
class Lease:
    """How a worker takes jobs: its token base, lock duration and id, how many to take, and its
    rate limit (``limit_max`` jobs per ``limit_ms`` window; 0 = none)."""

    token_base: str
    lock_ms: int
    worker_id: str
    count: int
    limit_max: int = 0
    limit_ms: int = 0


NO_LEASE = Lease("", 1, "", 0)


def _pairs(flat: Sequence[str]) -> dict[str, str]:
    return {flat[i]: flat[i + 1] for i in range(0, len(flat), 2)}


def _parse_taken(reply: Sequence[Any]) -> Taken:
    jobs = [
        TakenJob(str(reply[i]), str(reply[i + 1]), _pairs(reply[i + 2]))
        for i in range(2, len(reply), 3)
    ]
    return Taken(jobs, int(reply[0]), int(reply[1]))


@dataclass(frozen=True, slots=True)
class FlowJobSpec:
    """One node of a flow as add_flow.lua takes it; ``parent`` is a node index (0 = a root)."""

    queue: int
    parent: int
    job_id: str
    name: str
    data: str
    opts: str
    delay: int
    priority: int
    lifo: bool
    attempts: int
    parent_policy: str


def raise_for_code(code: int, keys: QueueKeys, job_id: str, transition: str) -> None:
    """Raise the exception that a script's negative return code stands for."""
    where = f"job {job_id!r} in queue {keys.queue!r}"
    if code == ScriptError.JOB_NOT_FOUND:
        raise JobNotFound(f"{where} does not exist ({transition})")
    if code == ScriptError.LOCK_MISSING:
        raise LockLost(f"{where}: lock is gone, another worker may run it ({transition})")
    if code == ScriptError.LOCK_MISMATCH:
        raise LockLost(f"{where}: lock is held by another worker ({transition})")
    if code == ScriptError.NOT_IN_STATE:
        raise JobNotActive(f"{where} is not active ({transition})")
    if code == ScriptError.JOB_LOCKED:
        raise JobStateError(
            f"{where} is being processed by a worker (it holds the lock); wait for it to "
            f"finish ({transition})",
            state="active",
        )
    raise RuntimeError(f"{where}: unexpected script result {code} ({transition})")


def _ready_keys(keys: QueueKeys) -> list[str]:
    return [keys.wait, keys.paused, keys.prioritized, keys.priority_seq]


async def add_job(
    scripts: ScriptRegistry,
    keys: QueueKeys,
    *,
    job_id: str,
    name: str,
    data: str,
    opts: str,
    delay: int,
    priority: int,
    lifo: bool,
    attempts: int,
    max_events: int,
    pipeline: Pipeline | ScriptBatch | None = None,
) -> Any:
    """Queue add_job.lua; the reply is ``[job_id, created]`` (see ``parse_add``)."""
    return await scripts.call(
        "add_job",
        [*_ready_keys(keys), keys.delayed, keys.marker, keys.meta, keys.events, keys.id],
        [
            keys.job_prefix,
            job_id,
            name,
            data,
            opts,
            delay,
            priority,
            int(lifo),
            attempts,
            max_events,
        ],
        pipeline,
    )


ADD_FIELDS = ("job_id", "name", "data", "opts", "delay", "priority", "lifo", "attempts")
"""A job's arguments to add_jobs.lua, in order (the fields of ``add_job`` but ``max_events``)."""


async def add_jobs(
    scripts: ScriptRegistry,
    keys: QueueKeys,
    jobs: Sequence[Mapping[str, Any]],
    max_events: int,
    pipeline: Pipeline | ScriptBatch | None = None,
) -> Any:
    """Queue add_jobs.lua for ``jobs`` (each with the ``ADD_FIELDS`` of ``add_job``); the reply
    is one ``add_job`` reply per job, in order."""
    args: list[Any] = [keys.job_prefix, max_events]
    for job in jobs:
        args += [int(job[f]) if f == "lifo" else job[f] for f in ADD_FIELDS]
    return await scripts.call(
        "add_jobs",
        [*_ready_keys(keys), keys.delayed, keys.marker, keys.meta, keys.events, keys.id],
        args,
        pipeline,
    )


@dataclass(frozen=True, slots=True)
class Added:
    """add_job's reply: the id; for a new job its state and creation time, else None."""

    job_id: str
    state: str | None
    timestamp: int | None
    deduplicated: bool = False  # no job created: ``job_id`` holds the deduplication id


def parse_add(reply: Sequence[Any]) -> Added:
    """Read add_job's reply."""
    if int(reply[1]) == 1:
        return Added(str(reply[0]), str(reply[2]), int(reply[3]))
    return Added(str(reply[0]), None, None)


async def move_to_active(scripts: ScriptRegistry, keys: QueueKeys, lease: Lease) -> Taken:
    """Take up to ``lease.count`` ready jobs (promoting due delayed jobs first)."""
    reply = await scripts.call(
        "move_to_active",
        [
            *_ready_keys(keys),
            keys.delayed,
            keys.active,
            keys.marker,
            keys.meta,
            keys.events,
            keys.limiter,
        ],
        [
            keys.job_prefix,
            lease.token_base,
            lease.lock_ms,
            lease.count,
            lease.worker_id,
            lease.limit_max,
            lease.limit_ms,
        ],
    )
    return _parse_taken(reply)


def _finish_keys(keys: QueueKeys, finished: str) -> list[str]:
    return [
        keys.active,
        finished,
        keys.stalled,
        keys.counters,
        keys.meta,
        keys.events,
        *_ready_keys(keys),
        keys.delayed,
        keys.marker,
        keys.limiter,
        keys.breaker_window,
    ]


def _parent_keys(parent: QueueKeys | None) -> list[str]:
    if parent is None:
        return []
    return [
        parent.waiting_children,
        *_ready_keys(parent),
        parent.delayed,
        parent.marker,
        parent.meta,
        parent.events,
    ]


def parent_queue(fields: Mapping[str, str]) -> QueueKeys | None:
    """The keys of the queue of a job's parent, from the job's hash (None: no parent)."""
    parsed = parse_job_key(fields.get("parent") or "")
    return parsed[0] if parsed else None


def _lease_args(lease: Lease) -> list[Any]:
    return [
        lease.count,
        lease.token_base,
        lease.lock_ms,
        lease.worker_id,
        lease.limit_max,
        lease.limit_ms,
    ]


async def complete_job(
    scripts: ScriptRegistry,
    keys: QueueKeys,
    job_id: str,
    token: str,
    returnvalue: str,
    retention: Retention,
    lease: Lease = NO_LEASE,
    metrics_window: int = DEFAULT_WINDOW_MS,
    parent: QueueKeys | None = None,
) -> Taken:
    """Mark an active job completed (fenced by ``token``) and take the next jobs; count it in
    the minute's metrics, kept ``metrics_window`` ms (0 = none).

    ``parent``: the keys of the parent's queue, for a job of a flow (see ``parent_queue``).
    """
    reply = await scripts.call(
        "complete_job",
        [*_finish_keys(keys, keys.completed), *_parent_keys(parent)],
        [
            keys.job_prefix,
            job_id,
            token,
            returnvalue,
            retention.count,
            retention.age_ms,
            *_lease_args(lease),
            keys.metrics_prefix,
            metrics_window,
            parent.job_prefix if parent else "",
        ],
    )
    if int(reply[0]) < 0:
        raise_for_code(int(reply[0]), keys, job_id, "complete_job")
    return _parse_taken(reply[1:])


@dataclass(frozen=True, slots=True)
class Completion:
    """One job of a ``complete_jobs`` call: its id, lock token, return value and retention."""

    job_id: str
    token: str
    returnvalue: str
    retention: Retention


async def complete_jobs(
    scripts: ScriptRegistry,
    keys: QueueKeys,
    jobs: Sequence[Completion],
    lease: Lease = NO_LEASE,
    metrics_window: int = DEFAULT_WINDOW_MS,
) -> tuple[list[int], Taken]:
    """Mark several active jobs completed in one call, each fenced by its own token as
    ``complete_job`` does it, and take the next jobs. Returns one code per job (0 completed,
    else the negative code ``raise_for_code`` turns into an exception) and what was taken.
    Jobs of a flow need ``complete_job``, which takes their parent queue's keys."""
    if not jobs:
        raise ValueError("complete_jobs: expected at least one job")
    args: list[Any] = [keys.job_prefix, *_lease_args(lease), keys.metrics_prefix, metrics_window]
    for job in jobs:
        args += [job.job_id, job.token, job.returnvalue, job.retention.count, job.retention.age_ms]
    reply = await scripts.call("complete_jobs", _finish_keys(keys, keys.completed), args)
    count = int(reply[0])
    return [int(code) for code in reply[1 : count + 1]], _parse_taken(reply[count + 1 :])


async def fail_job(
    scripts: ScriptRegistry,
    keys: QueueKeys,
    job_id: str,
    token: str,
    reason: str,
    stacktrace: str,
    retry_delay: int,
    retention: Retention,
    lease: Lease = NO_LEASE,
    metrics_window: int = DEFAULT_WINDOW_MS,
    parent: QueueKeys | None = None,
) -> Taken:
    """Record a failed attempt: retry after ``retry_delay`` ms, or fail for good when it is -1
    (then counted in the minute's metrics, kept ``metrics_window`` ms; 0 = none).

    ``parent``: the keys of the parent's queue, for a job of a flow (see ``parent_queue``).
    """
    reply = await scripts.call(
        "fail_job",
        [*_finish_keys(keys, keys.failed), *_parent_keys(parent)],
        [
            keys.job_prefix,
            job_id,
            token,
            reason,
            stacktrace,
            retry_delay,
            retention.count,
            retention.age_ms,
            *_lease_args(lease),
            keys.metrics_prefix,
            metrics_window,
            parent.job_prefix if parent else "",
        ],
    )
    if int(reply[0]) < 0:
        raise_for_code(int(reply[0]), keys, job_id, "fail_job")
    return _parse_taken(reply[1:])


async def extend_locks(
    scripts: ScriptRegistry, keys: QueueKeys, lock_ms: int, held: Sequence[tuple[str, str]]
) -> list[str]:
    """Renew the locks of ``held`` (id, token) pairs; return the ids whose lock was lost."""
    args: list[Any] = [keys.job_prefix, lock_ms]
    for job_id, token in held:
        args += [job_id, token]
    return [str(x) for x in await scripts.call("extend_locks", [keys.stalled], args)]


async def recover_stalled(
    scripts: ScriptRegistry,
    keys: QueueKeys,
    max_stalled_count: int,
    interval_ms: int,
    metrics_window: int = DEFAULT_WINDOW_MS,
) -> tuple[list[str], list[str]]:
    """Run one stalled check; return (ids moved back to wait, ids failed for stalling)."""
    reply = [
        str(x)
        for x in await scripts.call(
            "recover_stalled",
            [
                keys.stalled,
                keys.stalled_check,
                keys.active,
                *_ready_keys(keys),
                keys.marker,
                keys.failed,
                keys.counters,
                keys.meta,
                keys.events,
            ],
            [
                keys.job_prefix,
                max_stalled_count,
                interval_ms,
                keys.metrics_prefix,
                metrics_window,
            ],
        )
    ]
    if not reply:
        return [], []
    split = reply.index("|")
    return reply[:split], reply[split + 1 :]


async def hand_back_job(
    scripts: ScriptRegistry,
    keys: QueueKeys,
    job_id: str,
    token: str,
    *,
    reason: str = "worker shutdown",
    undo_start: bool = True,
) -> None:
    """Return an active job this worker holds to the front of wait, fenced by ``token``:
    at shutdown (``undo_start``), or rate limited (the worker goes on, so its start counts)."""
    code = int(
        await scripts.call(
            "hand_back_job",
            [keys.active, keys.stalled, *_ready_keys(keys), keys.marker, keys.meta, keys.events],
            [keys.job_prefix, job_id, token, reason, int(undo_start)],
        )
    )
    if code < 0:
        raise_for_code(code, keys, job_id, "hand_back_job")


async def change_priority(
    scripts: ScriptRegistry, keys: QueueKeys, job_id: str, priority: int
) -> None:
    """Give a job a new priority (a ready job moves at once)."""
    code = int(
        await scripts.call(
            "change_priority",
            [*_ready_keys(keys), keys.marker, keys.meta, keys.events],
            [keys.job_prefix, job_id, priority],
        )
    )
    if code < 0:
        raise_for_code(code, keys, job_id, "change_priority")


async def update_data(
    scripts: ScriptRegistry, keys: QueueKeys, job_id: str, data: str, token: str = ""
) -> None:
    """Replace a job's data; fenced by ``token`` when one is given (from a processor)."""
    code = int(
        await scripts.call(
            "update_data", [keys.meta, keys.events], [keys.job_prefix, job_id, data, token]
        )
    )
    if code < 0:
        raise_for_code(code, keys, job_id, "update_data")


async def move_to_delayed(
    scripts: ScriptRegistry,
    keys: QueueKeys,
    job_id: str,
    token: str,
    *,
    run_at: int = -1,
    delay: int = 0,
) -> int:
    """Send an active job back to delayed until ``run_at`` (ms), or ``delay`` ms from now on
    the server clock when ``run_at`` is -1; no attempt is used. Returns the run-at time."""
    reply = int(
        await scripts.call(
            "move_to_delayed",
            [keys.active, keys.stalled, keys.delayed, keys.marker, keys.meta, keys.events],
            [keys.job_prefix, job_id, token, run_at, delay],
        )
    )
    if reply < 0:
        raise_for_code(reply, keys, job_id, "move_to_delayed")
    return reply


async def rate_limit_queue(scripts: ScriptRegistry, keys: QueueKeys, ms: int) -> None:
    """Stop every worker of the queue from taking jobs for ``ms`` ms."""
    await scripts.call("rate_limit_queue", [keys.limiter, keys.meta, keys.events], [ms])


async def update_progress(
    scripts: ScriptRegistry, keys: QueueKeys, job_id: str, token: str, progress: str
) -> None:
    """Store an active job's progress, fenced by ``token``."""
    code = int(
        await scripts.call(
            "update_progress", [keys.meta, keys.events], [keys.job_prefix, job_id, token, progress]
        )
    )
    if code < 0:
        raise_for_code(code, keys, job_id, "update_progress")


async def add_log(
    scripts: ScriptRegistry, keys: QueueKeys, job_id: str, token: str, line: str, keep: int
) -> None:
    """Append a line to an active job's log (the newest ``keep`` kept), fenced by ``token``."""
    code = int(
        await scripts.call("add_log", [keys.meta], [keys.job_prefix, job_id, token, line, keep])
    )
    if code < 0:
        raise_for_code(code, keys, job_id, "add_log")


async def retry_job(
    scripts: ScriptRegistry, keys: QueueKeys, source: str, job_ids: Sequence[str]
) -> list[bool]:
    """Retry jobs still in ``source`` (failed/completed); one bool per id: retried or not."""
    source_key = keys.failed if source == "failed" else keys.completed
    reply = await scripts.call(
        "retry_job",
        [
            source_key,
            *_ready_keys(keys),
            keys.marker,
            keys.meta,
            keys.events,
            keys.waiting_children,
        ],
        [keys.job_prefix, source, *job_ids],
    )
    return [int(x) == 1 for x in reply]


async def retry_jobs(
    scripts: ScriptRegistry, keys: QueueKeys, source: str, cutoff_ms: int, batch: int
) -> int:
    """One batch of retry-all for jobs that finished at or before ``cutoff_ms``."""
    source_key = keys.failed if source == "failed" else keys.completed
    return int(
        await scripts.call(
            "retry_jobs",
            [
                source_key,
                *_ready_keys(keys),
                keys.marker,
                keys.meta,
                keys.events,
                keys.waiting_children,
            ],
            [keys.job_prefix, source, cutoff_ms, batch],
        )
    )


def _promote_keys(keys: QueueKeys) -> list[str]:
    return [keys.delayed, *_ready_keys(keys), keys.marker, keys.meta, keys.events]


async def promote_job(
    scripts: ScriptRegistry, keys: QueueKeys, job_ids: Sequence[str]
) -> list[bool]:
    """Promote jobs that are still delayed; one bool per id."""
    reply = await scripts.call("promote_job", _promote_keys(keys), [keys.job_prefix, *job_ids])
    return [int(x) == 1 for x in reply]


async def promote_jobs(scripts: ScriptRegistry, keys: QueueKeys, batch: int) -> int:
    """One batch of promote-all: the earliest delayed jobs; returns how many."""
    reply = await scripts.call("promote_job", _promote_keys(keys), [keys.job_prefix, "*", batch])
    return int(reply[0])


async def remove_job(scripts: ScriptRegistry, keys: QueueKeys, job_id: str) -> str | None:
    """Remove a job that no worker holds; return the state it was in, or None when the job
    belongs to a flow (``remove_tree`` removes those)."""
    reply = await scripts.call(
        "remove_job",
        [
            keys.wait,
            keys.paused,
            keys.prioritized,
            keys.delayed,
            keys.active,
            keys.completed,
            keys.failed,
            keys.waiting_children,
            keys.stalled,
            keys.meta,
            keys.events,
        ],
        [keys.job_prefix, job_id],
    )
    if int(reply[0]) == ScriptError.FLOW_JOB:
        return None
    if int(reply[0]) < 0:
        raise_for_code(int(reply[0]), keys, job_id, "remove_job")
    return str(reply[1])


async def pause_queue(scripts: ScriptRegistry, keys: QueueKeys) -> bool:
    """Pause; True if the queue was not paused before."""
    reply = await scripts.call("pause_queue", [keys.wait, keys.paused, keys.meta, keys.events], [])
    return int(reply) == 1


async def resume_queue(scripts: ScriptRegistry, keys: QueueKeys) -> bool:
    """Resume; True if the queue was paused before."""
    reply = await scripts.call(
        "resume_queue", [keys.wait, keys.paused, keys.meta, keys.events, keys.marker], []
    )
    return int(reply) == 1


async def clean_jobs(
    scripts: ScriptRegistry, keys: QueueKeys, state: str, grace_ms: int, batch: int
) -> list[str]:
    """One batch of removing ``state`` jobs that finished more than ``grace_ms`` ago."""
    state_key = keys.completed if state == "completed" else keys.failed
    reply = await scripts.call(
        "clean_jobs",
        [state_key, keys.meta, keys.events],
        [keys.job_prefix, state, grace_ms, batch],
    )
    return [str(x) for x in reply]


async def drain_queue(
    scripts: ScriptRegistry, keys: QueueKeys, include_delayed: bool, batch: int
) -> int:
    """One batch of removing jobs that wait to run; returns how many."""
    return int(
        await scripts.call(
            "drain_queue",
            [keys.wait, keys.paused, keys.prioritized, keys.delayed, keys.meta, keys.events],
            [keys.job_prefix, int(include_delayed), batch],
        )
    )


async def obliterate_queue(
    scripts: ScriptRegistry, keys: QueueKeys, force: bool, batch: int
) -> int:
    """One batch of deleting the queue; returns jobs deleted, or -8 if locked jobs refuse it."""
    return int(
        await scripts.call(
            "obliterate_queue",
            [
                keys.wait,
                keys.paused,
                keys.prioritized,
                keys.delayed,
                keys.active,
                keys.completed,
                keys.failed,
                keys.waiting_children,
                keys.stalled,
                keys.stalled_check,
                keys.marker,
                keys.meta,
                keys.events,
                keys.counters,
                keys.id,
                keys.priority_seq,
                keys.workers,
            ],
            [keys.job_prefix, int(force), batch],
        )
    )


# ---- job schedulers ---------------------------------------------------------------------------


def _scheduler_keys(keys: QueueKeys, scheduler_id: str) -> list[str]:
    return [
        keys.schedulers,
        keys.scheduler(scheduler_id),
        *_ready_keys(keys),
        keys.delayed,
        keys.marker,
        keys.meta,
        keys.events,
    ]


@dataclass(frozen=True, slots=True)
class SchedulerTemplate:
    """The job a scheduler creates at each tick, serialized as add_job stores it."""

    name: str
    data: str
    opts: str
    priority: int
    lifo: bool
    attempts: int


@dataclass(frozen=True, slots=True)
class Scheduled:
    """What a scheduler script did: its status, and the job and tick it concerns (if any)."""

    status: str
    job_id: str | None = None
    tick: int | None = None


def _parse_scheduled(reply: Sequence[Any]) -> Scheduled:
    status = str(reply[0])
    if status == "collision":
        return Scheduled(status, None, int(reply[1]))
    job_id = str(reply[1]) if len(reply) > 1 and reply[1] else None
    tick = int(reply[2]) if len(reply) > 2 and int(reply[2]) >= 0 else None
    return Scheduled(status, job_id, tick)


async def upsert_job_scheduler(
    scripts: ScriptRegistry,
    keys: QueueKeys,
    scheduler_id: str,
    *,
    tick_prefix: str,
    first_tick: int,
    fingerprint: str,
    timing_fingerprint: str,
    limit: int,
    end_date: int,
    max_events: int,
    template: SchedulerTemplate,
    fields: dict[str, str],
) -> Scheduled:
    """Create or change a scheduler (see upsert_job_scheduler.lua for the statuses)."""
    extra: list[str] = []
    for name, value in fields.items():
        extra += [name, value]
    reply = await scripts.call(
        "upsert_job_scheduler",
        [*_scheduler_keys(keys, scheduler_id), keys.active],
        [
            keys.job_prefix,
            scheduler_id,
            tick_prefix,
            first_tick,
            fingerprint,
            timing_fingerprint,
            limit,
            end_date,
            max_events,
            template.name,
            template.data,
            template.opts,
            template.priority,
            int(template.lifo),
            template.attempts,
            *extra,
        ],
    )
    return _parse_scheduled(reply)


async def schedule_next_job(
    scripts: ScriptRegistry,
    keys: QueueKeys,
    scheduler_id: str,
    *,
    tick_prefix: str,
    taken_job_id: str,
    timing_fingerprint: str,
    next_tick: int,
) -> Scheduled:
    """Create the job of the scheduler's next tick if ``taken_job_id`` is its current job."""
    reply = await scripts.call(
        "schedule_next_job",
        _scheduler_keys(keys, scheduler_id),
        [
            keys.job_prefix,
            scheduler_id,
            tick_prefix,
            taken_job_id,
            timing_fingerprint,
            next_tick,
        ],
    )
    return _parse_scheduled(reply)


async def remove_job_scheduler(
    scripts: ScriptRegistry, keys: QueueKeys, scheduler_id: str
) -> tuple[bool, str | None]:
    """Delete a scheduler; return (it existed, id of the waiting job removed with it)."""
    reply = await scripts.call(
        "remove_job_scheduler",
        [
            keys.schedulers,
            keys.scheduler(scheduler_id),
            keys.wait,
            keys.paused,
            keys.prioritized,
            keys.delayed,
            keys.meta,
            keys.events,
        ],
        [keys.job_prefix, scheduler_id],
    )
    if int(reply[0]) == 0:
        return False, None
    return True, (str(reply[1]) or None)


# ---- deduplication ----------------------------------------------------------------------------


async def add_deduplicated_job(
    scripts: ScriptRegistry,
    keys: QueueKeys,
    *,
    deduplication: Deduplication,
    job_id: str,
    name: str,
    data: str,
    opts: str,
    delay: int,
    priority: int,
    lifo: bool,
    attempts: int,
    max_events: int,
    pipeline: Pipeline | ScriptBatch | None = None,
) -> Any:
    """Queue add_deduplicated_job.lua; read the reply with ``parse_deduplicated_add``."""
    return await scripts.call(
        "add_deduplicated_job",
        [
            *_ready_keys(keys),
            keys.delayed,
            keys.marker,
            keys.meta,
            keys.events,
            keys.id,
            keys.dedup(deduplication.id),
        ],
        [
            keys.job_prefix,
            job_id,
            name,
            data,
            opts,
            delay,
            priority,
            int(lifo),
            attempts,
            max_events,
            deduplication.id,
            deduplication.ttl or 0,
            int(deduplication.extend),
            int(deduplication.replace),
        ],
        pipeline,
    )


def parse_deduplicated_add(reply: Sequence[Any]) -> Added:
    """Read add_deduplicated_job's reply (a replaced holder is named in its events only)."""
    code = int(reply[1])
    if code in (1, 3):
        return Added(str(reply[0]), str(reply[2]), int(reply[3]))
    return Added(str(reply[0]), None, None, deduplicated=code == 2)


async def remove_deduplication_key(
    scripts: ScriptRegistry, keys: QueueKeys, dedup_id: str, job_id: str | None = None
) -> bool:
    """Free ``dedup_id`` (only while ``job_id`` holds it, when given); True if it was held."""
    reply = await scripts.call("remove_deduplication_key", [keys.dedup(dedup_id)], [job_id or ""])
    return int(reply) == 1


def _flow_add_keys(keys: QueueKeys) -> list[str]:
    return [
        *_ready_keys(keys),
        keys.delayed,
        keys.marker,
        keys.meta,
        keys.events,
        keys.id,
        keys.waiting_children,
    ]


async def add_flow(
    scripts: ScriptRegistry,
    queues: Sequence[QueueKeys],
    nodes: Sequence[FlowJobSpec],
    max_events: int,
) -> tuple[int, list[tuple[str, str]]]:
    """Create trees of jobs in one call; return (server time, [(id, state)] per node).

    Raises ``JobStateError`` when a non-root node's custom id exists (nothing is written).
    """
    flow_keys = [k for q in queues for k in _flow_add_keys(q)]
    args: list[Any] = [max_events, len(queues), *(q.job_prefix for q in queues)]
    for node in nodes:
        args += [
            node.queue,
            node.parent,
            node.job_id,
            node.name,
            node.data,
            node.opts,
            node.delay,
            node.priority,
            int(node.lifo),
            node.attempts,
            node.parent_policy,
        ]
    reply = await scripts.call("add_flow", flow_keys, args)
    if int(reply[0]) == ScriptError.ID_TAKEN:
        node = nodes[int(reply[1]) - 1]
        raise JobStateError(
            f"job id {node.job_id!r} exists already in queue "
            f"{queues[node.queue - 1].queue!r}: a child of a flow needs an id of its own "
            "(nothing was added)",
            state="exists",
        )
    pairs = [(str(reply[i]), str(reply[i + 1])) for i in range(1, len(reply), 2)]
    return int(reply[0]), pairs


@dataclass(frozen=True, slots=True)
class TreeRemoval:
    """remove_tree's reply: done (state, count), or the code and the job key or count."""

    code: int
    state: str = ""
    removed: int = 0
    detail: str = ""


def _tree_keys(keys: QueueKeys) -> list[str]:
    return [
        keys.wait,
        keys.paused,
        keys.prioritized,
        keys.delayed,
        keys.active,
        keys.completed,
        keys.failed,
        keys.waiting_children,
        keys.stalled,
        keys.meta,
        keys.events,
        keys.priority_seq,
        keys.marker,
    ]


async def remove_tree(
    scripts: ScriptRegistry, queues: Sequence[QueueKeys], job_key: str, limit: int
) -> TreeRemoval:
    """Remove a job of a flow with its descendants; ``queues`` must hold every queue of the
    subtree and the parent's queue (code -11 names a job whose queue is missing)."""
    reply = await scripts.call(
        "remove_tree",
        [k for q in queues for k in _tree_keys(q)],
        [len(queues), *(q.job_prefix for q in queues), job_key, limit],
    )
    code = int(reply[0])
    if code == 1:
        return TreeRemoval(1, str(reply[1]), int(reply[2]))
    return TreeRemoval(code, detail=str(reply[1]) if len(reply) > 1 else "")


@dataclass(frozen=True, slots=True)
class CancelReply:
    """cancel_job's reply: ``failed_now`` with the state the job left, or a running job whose
    worker was asked to stop it (``state`` "active", ``failed_now`` False)."""

    state: str
    failed_now: bool


async def cancel_job(scripts: ScriptRegistry, keys: QueueKeys, job_id: str, by: str) -> CancelReply:
    """Cancel a job: fail it now if it waits, else ask the worker running it to stop it."""
    reply = await scripts.call(
        "cancel_job",
        [
            keys.wait,
            keys.paused,
            keys.prioritized,
            keys.delayed,
            keys.active,
            keys.failed,
            keys.stalled,
            keys.counters,
            keys.meta,
            keys.events,
        ],
        [keys.job_prefix, job_id, by, keys.cancel_channel],
    )
    code = int(reply[0])
    if code == 1:
        return CancelReply(str(reply[1]), True)
    if code == 2:
        return CancelReply("active", False)
    if code == ScriptError.NOT_IN_STATE:
        raise JobStateError(f"job {job_id!r} in queue {keys.queue!r} cannot be cancelled")
    raise_for_code(code, keys, job_id, "cancel_job")
    raise AssertionError("unreachable")


async def dead_letter_job(
    scripts: ScriptRegistry,
    keys: QueueKeys,
    dead_letter: QueueKeys,
    job_id: str,
    token: str,
    reason: str,
    stacktrace: str,
    max_events: int,
    lease: Lease = NO_LEASE,
    metrics_window: int = DEFAULT_WINDOW_MS,
    parent: QueueKeys | None = None,
) -> tuple[str, Taken]:
    """Fail an active job for good and move it to the queue ``dead_letter`` in the same step;
    return the dead letter's id there and the jobs taken next. Counted in the minute's metrics
    like any final failure; ``parent``: the parent queue's keys, for a job of a flow."""
    reply = await scripts.call(
        "dead_letter_job",
        [
            keys.active,
            keys.stalled,
            keys.counters,
            keys.meta,
            keys.events,
            *_ready_keys(keys),
            keys.delayed,
            keys.marker,
            dead_letter.failed,
            dead_letter.meta,
            dead_letter.events,
            dead_letter.id,
            keys.limiter,
            keys.breaker_window,
            *_parent_keys(parent),
        ],
        [
            keys.job_prefix,
            job_id,
            token,
            reason,
            stacktrace,
            dead_letter.job_prefix,
            keys.queue,
            dead_letter.queue,
            max_events,
            *_lease_args(lease),
            keys.metrics_prefix,
            metrics_window,
            parent.job_prefix if parent else "",
        ],
    )
    if int(reply[0]) < 0:
        raise_for_code(int(reply[0]), keys, job_id, "dead_letter_job")
    return str(reply[1]), _parse_taken(reply[2:])


async def replay_dead_letters(
    scripts: ScriptRegistry,
    dead_letter: QueueKeys,
    origin: QueueKeys,
    ids: Sequence[str],
    max_events: int,
) -> list[int]:
    """Put dead letters of ``origin`` back on it; one code per id (see the script's header)."""
    reply = await scripts.call(
        "replay_dead_letters",
        [dead_letter.failed, dead_letter.meta, dead_letter.events, *_ready_keys(origin),
         origin.marker, origin.meta, origin.events],
        [dead_letter.job_prefix, origin.job_prefix, origin.queue, max_events, *ids],
    )  # fmt: skip
    return [int(x) for x in reply]


async def set_breaker(
    scripts: ScriptRegistry, keys: QueueKeys, settings_json: str, window_ms: int
) -> bool:
    """Store the queue's circuit breaker settings; True if it had no breaker before."""
    reply = await scripts.call(
        "set_breaker", [keys.meta, keys.breaker_window], [settings_json, window_ms]
    )
    return int(reply) == 1


def _breaker_keys(keys: QueueKeys) -> list[str]:
    return [keys.meta, keys.breaker_window, keys.events, keys.marker]


async def reset_breaker(scripts: ScriptRegistry, keys: QueueKeys) -> bool:
    """Close the queue's circuit breaker now; True if it was open or half-open."""
    return int(await scripts.call("reset_breaker", _breaker_keys(keys), [])) == 1


async def remove_breaker(scripts: ScriptRegistry, keys: QueueKeys) -> bool:
    """Take the circuit breaker off the queue (closing it first); True if it had one."""
    return int(await scripts.call("remove_breaker", _breaker_keys(keys), [])) == 1
