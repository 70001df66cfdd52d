"""One typed function per Lua script: the single owner of each script's KEYS and ARGV order,
and of turning its negative return codes into exceptions that name the job and transition."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from redis.asyncio.client import Pipeline

from .errors import JobNotActive, JobNotFound, JobStateError, LockLost, ScriptError
from .keys import QueueKeys
from .options import Retention
from .scripts import ScriptRegistry


@dataclass(frozen=True, slots=True)
class TakenJob:
    """A job a worker just made active: its id, lock token and hash fields."""

    id: str
    token: str
    fields: dict[str, str]


@dataclass(frozen=True, slots=True)
class Taken:
    """What a fetch returned: the jobs taken, and ms until the next delayed job (-1 = none)."""

    jobs: list[TakenJob]
    next_delay_ms: int


@dataclass(frozen=True, slots=True)
class Lease:
    """How a worker takes jobs: its token base, lock duration and id, and how many to take."""

    token_base: str
    lock_ms: int
    worker_id: str
    count: int


NO_LEASE = Lease("", 1, "", 0)


def _pairs(flat: Sequence[str]) -> dict[str, str]:
    return {flat[i]: flat[i + 1] for i in range(0, len(flat), 2)}


def _parse_taken(reply: Sequence[Any]) -> Taken:
    jobs = [
        TakenJob(str(reply[i]), str(reply[i + 1]), _pairs(reply[i + 2]))
        for i in range(1, len(reply), 3)
    ]
    return Taken(jobs, int(reply[0]))


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
    pipeline: Pipeline | None = None,
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


@dataclass(frozen=True, slots=True)
class Added:
    """add_job's reply: the id; for a new job its state and creation time, else None."""

    job_id: str
    state: str | None
    timestamp: int | None


def parse_add(reply: Sequence[Any]) -> Added:
    """Read add_job's reply."""
    if int(reply[1]) == 1:
        return Added(str(reply[0]), str(reply[2]), int(reply[3]))
    return Added(str(reply[0]), None, None)


async def move_to_active(scripts: ScriptRegistry, keys: QueueKeys, lease: Lease) -> Taken:
    """Take up to ``lease.count`` ready jobs (promoting due delayed jobs first)."""
    reply = await scripts.call(
        "move_to_active",
        [*_ready_keys(keys), keys.delayed, keys.active, keys.marker, keys.meta, keys.events],
        [keys.job_prefix, lease.token_base, lease.lock_ms, lease.count, lease.worker_id],
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
    ]


def _lease_args(lease: Lease) -> list[Any]:
    return [lease.count, lease.token_base, lease.lock_ms, lease.worker_id]


async def complete_job(
    scripts: ScriptRegistry,
    keys: QueueKeys,
    job_id: str,
    token: str,
    returnvalue: str,
    retention: Retention,
    lease: Lease = NO_LEASE,
) -> Taken:
    """Mark an active job completed (fenced by ``token``) and take the next jobs."""
    reply = await scripts.call(
        "complete_job",
        _finish_keys(keys, keys.completed),
        [
            keys.job_prefix,
            job_id,
            token,
            returnvalue,
            retention.count,
            retention.age_ms,
            *_lease_args(lease),
        ],
    )
    if int(reply[0]) < 0:
        raise_for_code(int(reply[0]), keys, job_id, "complete_job")
    return _parse_taken(reply[1:])


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
) -> Taken:
    """Record a failed attempt: retry after ``retry_delay`` ms, or fail for good when it is -1."""
    reply = await scripts.call(
        "fail_job",
        _finish_keys(keys, keys.failed),
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
    scripts: ScriptRegistry, keys: QueueKeys, max_stalled_count: int, interval_ms: int
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
            [keys.job_prefix, max_stalled_count, interval_ms],
        )
    ]
    if not reply:
        return [], []
    split = reply.index("|")
    return reply[:split], reply[split + 1 :]


async def hand_back_job(scripts: ScriptRegistry, keys: QueueKeys, job_id: str, token: str) -> None:
    """Return an active job this worker holds to wait (shutdown), fenced by ``token``."""
    code = int(
        await scripts.call(
            "hand_back_job",
            [keys.active, keys.stalled, *_ready_keys(keys), keys.marker, keys.meta, keys.events],
            [keys.job_prefix, job_id, token],
        )
    )
    if code < 0:
        raise_for_code(code, keys, job_id, "hand_back_job")


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
        [source_key, *_ready_keys(keys), keys.marker, keys.meta, keys.events],
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
            [source_key, *_ready_keys(keys), keys.marker, keys.meta, keys.events],
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


async def remove_job(scripts: ScriptRegistry, keys: QueueKeys, job_id: str) -> str:
    """Remove a job that no worker holds; return the state it was in."""
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
