"""Reading one BullMQ job in full (hash, state, logs, due time, parent and children) and the
active jobs with their locks: bounded, read-only commands in one pipeline each."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from dashboard.bullmq.jobs import Family, JobExtras, job_detail
from dashboard.bullmq.keys import LIST_STATES, BullKeys
from dashboard.bullmq.replies import as_int, as_pairs
from dashboard.model import ActiveJob, JobDetail
from dashboard.sanitize import from_redis

LOG_LINES = 200
"""Newest log lines read for the detail view."""
CHILDREN_SAMPLE = 20
"""Children of each kind listed in a parent's detail (the counts are exact)."""
LPOS_MAX = 100_000
"""List entries compared when looking for a job in wait/paused/active, so the search is bounded."""
FIND_ORDER = (
    "completed",
    "failed",
    "delayed",
    "prioritized",
    "active",
    "wait",
    "paused",
    "waiting-children",
)
"""Where a job is looked for, in the order BullMQ's ``getState`` does."""


def read_place(pipe: Pipeline, keys: BullKeys, job_id: str) -> None:
    """Queue the ``len(FIND_ORDER)`` reads that find which state holds a job (lists searched
    among their first ``LPOS_MAX`` entries)."""
    for state in FIND_ORDER:
        if state in LIST_STATES:
            pipe.lpos(keys.state(state), job_id, maxlen=LPOS_MAX)
        else:
            pipe.zscore(keys.state(state), job_id)


def place_of(replies: Sequence[Any]) -> str | None:
    """The first state of ``FIND_ORDER`` that holds the job, from ``read_place``'s replies."""
    return next((s for s, p in zip(FIND_ORDER, replies, strict=True) if p is not None), None)


async def read_active_jobs(
    client: Redis, keys: BullKeys, start: int, count: int
) -> tuple[list[ActiveJob], int]:
    """Active jobs longest-running first (the right end of ``active``) and whether each still
    has its lock; a job without one is stalled until a worker's sweep moves it back."""
    async with client.pipeline(transaction=False) as pipe:
        pipe.lrange(keys.active, -(start + count), -(start + 1))
        pipe.llen(keys.active)
        members, total = await pipe.execute()
    ids = [from_redis(m) for m in reversed(members)]
    async with client.pipeline(transaction=False) as pipe:
        for job_id in ids:
            pipe.exists(keys.lock(job_id))
            pipe.hmget(keys.job(job_id), ["name", "processedOn", "pb"])
        replies: list[Any] = await pipe.execute() if ids else []
    jobs = [
        ActiveJob(
            id=job_id,
            name=from_redis(fields[0] or ""),
            active_since_ms=as_int(fields[1]) or 0,
            lock_held=bool(held),
            worker=from_redis(fields[2]) if fields[2] else None,
        )
        for job_id, held, fields in zip(ids, replies[::2], replies[1::2], strict=True)
    ]
    return jobs, int(total)


async def read_job_detail(client: Redis, keys: BullKeys, job_id: str) -> JobDetail | None:
    """The job hash with its state, logs, due time and flow links, in one pipeline."""
    async with client.pipeline(transaction=False) as pipe:
        pipe.hgetall(keys.job(job_id))
        read_place(pipe, keys, job_id)
        pipe.lrange(keys.logs(job_id), -LOG_LINES, -1)
        pipe.llen(keys.logs(job_id))
        pipe.scard(keys.dependencies(job_id))
        pipe.srandmember(keys.dependencies(job_id), CHILDREN_SAMPLE)
        pipe.hlen(keys.processed(job_id))
        pipe.hrandfield(keys.processed(job_id), CHILDREN_SAMPLE, withvalues=True)
        pipe.hlen(keys.failed_children(job_id))
        pipe.hrandfield(keys.failed_children(job_id), CHILDREN_SAMPLE, withvalues=True)
        pipe.zcard(keys.unsuccessful(job_id))
        pipe.zrange(keys.unsuccessful(job_id), 0, CHILDREN_SAMPLE - 1)
        replies: list[Any] = await pipe.execute()
    raw_fields, places, rest = (
        replies[0],
        replies[1 : 1 + len(FIND_ORDER)],
        replies[1 + len(FIND_ORDER) :],
    )
    if not raw_fields:
        return None
    fields = {from_redis(k): from_redis(v) for k, v in raw_fields.items()}
    place = dict(zip(FIND_ORDER, places, strict=True))
    found = place_of(places)
    logs, log_count, pending, pending_ids, done, done_pairs, ignored = rest[:7]
    ignored_pairs, unsuccessful, unsuccessful_ids = rest[7:]
    delayed_score = place["delayed"]
    extras = JobExtras(
        logs=tuple(from_redis(line) for line in logs),
        log_count=int(log_count),
        due_ms=None if delayed_score is None else int(float(delayed_score)) // 0x1000,
        family=Family(
            pending=int(pending),
            pending_sample=tuple(sorted(from_redis(k) for k in pending_ids or ())),
            processed=int(done),
            processed_sample=tuple(sorted(as_pairs(done_pairs))),
            ignored=int(ignored),
            ignored_sample=tuple(sorted(as_pairs(ignored_pairs))),
            unsuccessful=int(unsuccessful),
            unsuccessful_sample=tuple(from_redis(k) for k in unsuccessful_ids),
        ),
    )
    return job_detail(keys.queue, job_id, found, fields, extras)


async def read_job_state(client: Redis, keys: BullKeys, job_id: str) -> str | None:
    """Where the job is now (searched in ``getState``'s order, lists bounded by ``LPOS_MAX``):
    None when its hash is gone, "unknown" when it is in no state structure."""
    async with client.pipeline(transaction=False) as pipe:
        pipe.exists(keys.job(job_id))
        read_place(pipe, keys, job_id)
        exists, *places = await pipe.execute()
    if not exists:
        return None
    return place_of(places) or "unknown"
