"""BullMQ's job schedulers and legacy repeatable jobs, read as the schedulers view shows them.

Both live in the ``repeat`` sorted set (member = scheduler id or repeat key, score = the ms time
of the next iteration) with a ``repeat:<id>`` hash beside it. A job scheduler (BullMQ 5.16+ and
6) records ``ic``, its iteration count; a legacy repeatable job (``Queue.add`` with ``repeat``,
BullMQ 5 only) does not, so its count and limit are read from its newest job's ``repeat``
options. Each iteration is a job of id ``repeat:<id>:<next ms>`` (legacy keys holding ``:`` get
an md5 checksum instead of the key), which the view shows with its state.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from redis.asyncio import Redis

from dashboard.bullmq.job_reads import FIND_ORDER, place_of, read_place
from dashboard.bullmq.keys import BullKeys
from dashboard.bullmq.replies import int_field, server_ms
from dashboard.model import SchedulerPage, SchedulerRow
from dashboard.sanitize import from_redis, to_redis

LEGACY_KEY_PARTS = 5
"""A legacy repeat key spells ``name:jobId:endDate:tz:pattern-or-every`` (BullMQ before 5)."""


class BadRecord(ValueError):
    """A ``repeat:<id>`` hash that BullMQ could not have written; the message says why."""


def _legacy_shaped(key: str) -> bool:
    return key.count(":") >= LEGACY_KEY_PARTS - 1


def _from_key(key: str) -> dict[str, str]:
    """The fields a legacy repeat key spells, as BullMQ's ``keyToData`` decodes them (a numeric
    last part is an ``every`` interval, anything else a cron pattern)."""
    name, job_id, end_date, tz, *rest = key.split(":")
    del job_id  # the custom job id of the repeat: not shown
    suffix = ":".join(rest)
    fields = {"name": name, "endDate": end_date, "tz": tz}
    fields["every" if suffix.isdigit() else "pattern"] = suffix
    return {k: v for k, v in fields.items() if v}


def last_job_id(scheduler_id: str, next_ms: int, legacy: bool, name: str) -> str:
    """The id BullMQ gives the iteration due at ``next_ms``: ``repeat:<id>:<ms>``, except for
    legacy keys holding ``:``, checksummed as BullMQ 5's ``getRepeatJobKey`` does (with no
    ``id`` in the job data, the usual case)."""
    if legacy and len(scheduler_id.split(":")) > 2:
        namespace = hashlib.md5(to_redis(scheduler_id)).hexdigest()
        checksum = hashlib.md5(to_redis(f"{name}{namespace}")).hexdigest()
        return f"repeat:{checksum}:{next_ms}"
    return f"repeat:{scheduler_id}:{next_ms}"


def scheduler_row(scheduler_id: str, next_ms: int, fields: Mapping[str, str]) -> SchedulerRow:
    """A row from one ``repeat`` member, its score and its hash (decoded from the key when a
    legacy one has no hash); ``BadRecord`` if the hash is not BullMQ's."""
    if not fields and _legacy_shaped(scheduler_id):
        fields = _from_key(scheduler_id)
    if "name" not in fields:
        raise BadRecord("no 'name' field: not a job scheduler's record")
    every, pattern = int_field(fields, "every", BadRecord), fields.get("pattern") or None
    if every is None and pattern is None:
        raise BadRecord("neither 'every' nor 'pattern' is set")
    iterations = int_field(fields, "ic", BadRecord)
    legacy = iterations is None
    return SchedulerRow(
        id=scheduler_id,
        every_ms=every,
        pattern=pattern if every is None else None,
        tz=fields.get("tz") or None,
        next_run_ms=next_ms,
        iterations=iterations or 0,
        limit=int_field(fields, "limit", BadRecord),
        end_date_ms=int_field(fields, "endDate", BadRecord),
        job_name=fields["name"],
        last_job_id=last_job_id(scheduler_id, next_ms, legacy, fields["name"]),
    )


def _legacy_counts(row: SchedulerRow, opts: str | None) -> SchedulerRow:
    """A legacy repeatable job's iteration count and limit, from its newest job's options."""
    try:
        repeat = json.loads(opts or "{}").get("repeat")
    except (ValueError, AttributeError):
        return row
    if not isinstance(repeat, dict):
        return row
    count, limit = repeat.get("count"), repeat.get("limit")
    return replace(
        row,
        iterations=count if isinstance(count, int) else row.iterations,
        limit=limit if isinstance(limit, int) else row.limit,
    )


@dataclass(frozen=True, slots=True)
class _Found:
    """A scheduler read from its hash: the row, or why it could not be read."""

    row: SchedulerRow
    legacy: bool = False


def _decode(scheduler_id: str, score: Any, raw: Mapping[Any, Any]) -> _Found | None:
    fields = {from_redis(k): from_redis(v) for k, v in raw.items()}
    if not fields and not _legacy_shaped(scheduler_id):
        return None  # removed since the ZRANGE
    try:
        next_ms = int(float(score))
        row = scheduler_row(scheduler_id, next_ms, fields)
    except (BadRecord, ValueError) as exc:
        return _Found(SchedulerRow(id=scheduler_id, malformed=str(exc)))
    return _Found(row, legacy="ic" not in fields)


async def _with_last_jobs(
    client: Redis, keys: BullKeys, found: Sequence[_Found]
) -> list[SchedulerRow]:
    """Each row with its last job's state (and, for legacy ones, its counts): one pipeline."""
    jobs = [f.row.last_job_id for f in found if f.row.last_job_id is not None]
    async with client.pipeline(transaction=False) as pipe:
        for job_id in jobs:
            pipe.hget(keys.job(job_id), "opts")
            read_place(pipe, keys, job_id)
        replies: list[Any] = await pipe.execute() if jobs else []
    per = 1 + len(FIND_ORDER)
    read = {
        job_id: (replies[i * per], place_of(replies[i * per + 1 : (i + 1) * per]))
        for i, job_id in enumerate(jobs)
    }
    rows = []
    for item in found:
        row = item.row
        if row.last_job_id is not None:
            opts, state = read[row.last_job_id]
            row = replace(row, last_job_state=state)
            if item.legacy:
                row = _legacy_counts(row, None if opts is None else from_redis(opts))
        rows.append(row)
    return rows


async def read_schedulers(client: Redis, keys: BullKeys, start: int, count: int) -> SchedulerPage:
    """``count`` schedulers from ``start``, soonest next run first: one ZRANGE of ``repeat``,
    the hashes of those read, then their newest jobs."""
    async with client.pipeline(transaction=False) as pipe:
        # never "start -1" (the whole set): a page of 0 reads one member and drops it
        pipe.zrange(keys.repeat, start, start + max(count, 1) - 1, withscores=True)
        pipe.zcard(keys.repeat)
        pipe.time()
        members, total, now = await pipe.execute(raise_on_error=False)
    for reply in (members, total):
        if isinstance(reply, Exception):
            raise reply
    ids = [(from_redis(member), score) for member, score in members[: max(count, 0)]]
    async with client.pipeline(transaction=False) as pipe:
        for scheduler_id, _ in ids:
            pipe.hgetall(keys.scheduler(scheduler_id))
        hashes: list[Any] = await pipe.execute() if ids else []
    found = [
        item
        for (scheduler_id, score), raw in zip(ids, hashes, strict=True)
        if (item := _decode(scheduler_id, score, raw or {})) is not None
    ]
    rows = await _with_last_jobs(client, keys, found)
    return SchedulerPage(
        queue=keys.queue, start=start, rows=tuple(rows), total=int(total), now_ms=server_ms(now)
    )
