"""``CorralBackend``: the dashboard's reads and actions on queues in the engine's own layout.

Reads are bounded, read-only commands over ``QueueKeys`` (one pipeline for the counts of all
queues), so a read-only dashboard never writes; actions go through ``engine.Queue``.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any, cast

from redis.asyncio import Redis

from dashboard.backend import FLOW_PATH_MAX, ActionRefused, QueueReading
from dashboard.model import (
    ActiveJob,
    Breach,
    Event,
    JobDetail,
    JobLink,
    JobLinks,
    JobPage,
    JobRow,
    MinuteHistory,
    ReplayOutcome,
    SchedulerPage,
    SchedulerRow,
    StateCounts,
    WorkerRow,
)
from dashboard.sanitize import from_redis, not_utf8
from engine.errors import JobNotFound, JobStateError
from engine.flow_model import JobRef
from engine.flows import FlowNode, read_flow
from engine.health import Thresholds, check_queues
from engine.job import ALL_STATES, LIST_STATES, NEWEST_FIRST_STATES, F, Job, JobState
from engine.keys import DEFAULT_PREFIX, QueueKeys, validate_prefix
from engine.metrics import MINUTE_MS
from engine.queue import Queue, read_job_state
from engine.schedulers import JobScheduler, tick_job_id, tick_job_prefix

SCAN_COUNT = 5_000
"""Keys one SCAN call walks (a few milliseconds of the server's time each)."""
SAMPLE_KEYS = 32
"""Random keys read to find the biggest queues before a SCAN would (``sample_queues``)."""
LOG_LINES = 200
"""Newest log lines read for the detail view."""
LPOS_MAX = 100_000
"""List entries compared when looking for a job in wait/paused, so the search stays bounded."""
EARLIER_JOBS = 5
"""Jobs before a scheduler's last one whose states the schedulers view shows."""

_ROW_FIELDS = (
    F.NAME,
    F.TIMESTAMP,
    F.FINISHED_ON,
    F.ATTEMPTS_MADE,
    F.ATTEMPTS,
    F.FAILED_REASON,
    F.ORIGIN_QUEUE,
    F.ORIGIN_ID,
    F.PROGRESS,
)


def _int_or_none(raw: str | None) -> int | None:
    if raw is None or raw == "":
        return None
    try:
        return int(raw)
    except ValueError:
        return None


def _row(job_id: str, state: str, values: Sequence[str | None]) -> JobRow:
    """A table row; malformed as the engine's workers judge a job hash: no name, a number
    field that is no number, or a field that is not UTF-8 (read as lone surrogates)."""
    name, timestamp, finished, made, attempts, reason, origin_queue, origin_id, progress = values
    numbers = (timestamp, finished, made, attempts)
    malformed = (
        name is None
        or any(raw not in (None, "") and _int_or_none(raw) is None for raw in numbers)
        or any(raw is not None and not_utf8(raw) for raw in values)
    )
    return JobRow(
        id=job_id,
        state=state,
        name=name or "",
        timestamp_ms=_int_or_none(timestamp),
        finished_on_ms=_int_or_none(finished),
        attempts_made=_int_or_none(made) or 0,
        attempts=_int_or_none(attempts) or 1,
        failed_reason=reason,
        malformed=malformed,
        origin_queue=origin_queue or None,
        origin_id=origin_id or None,
        progress=progress or None,
    )


class CorralBackend:
    """The ``Backend`` for queues written by ``engine`` under one prefix."""

    def __init__(
        self, prefix: str = DEFAULT_PREFIX, *, allow_unsafe_eviction: bool = False
    ) -> None:
        self.prefix = validate_prefix(prefix)
        self.allow_unsafe_eviction = allow_unsafe_eviction
        """Passed to the engine's ``Queue`` for actions: it refuses an evicting server too."""
        self._channel = re.compile(r"^__keyspace@\d+__:" + re.escape(prefix) + r":\{([^}]*)\}:")

    def keys(self, queue: str) -> QueueKeys:
        """The keys of one queue."""
        return QueueKeys(queue, self.prefix)

    async def discover_queues(self, client: Redis) -> list[str]:
        """Every queue with a ``meta`` key under the prefix (SCAN with MATCH and COUNT)."""
        found: set[str] = set()
        async for names in self.scan_queues(client):
            found.update(names)
        return sorted(found)

    async def scan_queues(self, client: Redis) -> AsyncIterator[list[str]]:
        """The queues of each batch of one cursored SCAN for ``meta`` keys (MATCH, COUNT), as
        each batch is read (often none). SCAN still walks every key of the database, so on a
        big keyspace the whole walk takes a while; the monitor shows each queue on the way."""
        pattern = QueueKeys.meta_pattern(self.prefix)
        cursor = 0
        while True:
            cursor, keys = await client.scan(cursor, match=pattern, count=SCAN_COUNT)
            found = (QueueKeys.from_meta_key(from_redis(key), self.prefix) for key in keys)
            yield sorted({k.queue for k in found if k is not None})
            if int(cursor) == 0:
                return

    async def sample_queues(self, client: Redis) -> list[str]:
        """Queues found before any SCAN, in two round trips: the queues of ``SAMPLE_KEYS``
        random keys (RANDOMKEY), those whose ``meta`` key exists. A queue holding a share ``s``
        of all keys is missed with probability ``(1 - s) ** SAMPLE_KEYS``, so the queues that
        make a SCAN long (those with most keys) are found at once."""
        async with client.pipeline(transaction=False) as pipe:
            for _ in range(SAMPLE_KEYS):
                pipe.randomkey()
            sampled: list[str | bytes | None] = await pipe.execute()
        named = (QueueKeys.from_any_key(from_redis(key), self.prefix) for key in sampled if key)
        return await self.confirm_queues(client, sorted({k.queue for k in named if k}))

    async def confirm_queues(self, client: Redis, names: Sequence[str]) -> list[str]:
        """Those of ``names`` that are queues (their ``meta`` key exists), in one pipeline."""
        if not names:
            return []
        async with client.pipeline(transaction=False) as pipe:
            for name in names:
                pipe.exists(self.keys(name).meta)
            found: list[int] = await pipe.execute()
        return [name for name, exists in zip(names, found, strict=True) if exists]

    async def read_counts(self, client: Redis, queues: Sequence[str]) -> dict[str, QueueReading]:
        """One pipeline: LLEN/ZCARD per state, paused flag, totals and live workers per queue."""
        # a worker's score in ``workers`` is when its heartbeat expires, on the server's clock
        seconds, micros = await client.time()
        live_since = int(seconds) * 1000 + int(micros) // 1000
        async with client.pipeline(transaction=False) as pipe:
            for queue in queues:
                keys = self.keys(queue)
                for state in ALL_STATES:
                    key = keys.of_state(state.value)
                    if state in LIST_STATES:
                        pipe.llen(key)
                    else:
                        pipe.zcard(key)
                pipe.hmget(keys.meta, ["paused", "tripped", "breaker_reason", "dead_letter"])
                pipe.hmget(keys.counters, ["completed", "failed"])
                pipe.zcard(keys.workers)
                pipe.zcount(keys.workers, live_since, "+inf")
                pipe.lindex(keys.wait, -1)  # the next job to run from wait: the oldest there
            pipe.time()
            replies: list[Any] = await pipe.execute()
        oldest = await self._oldest_wait(client, queues, replies)
        per_queue = len(ALL_STATES) + 5
        readings: dict[str, QueueReading] = {}
        for index, queue in enumerate(queues):
            chunk = replies[index * per_queue : (index + 1) * per_queue]
            counts = dict(zip((s.value for s in ALL_STATES), chunk, strict=False))
            meta, totals, registered, live, _next = chunk[len(ALL_STATES) :]
            paused, tripped, reason, dead_letter = meta
            readings[queue] = QueueReading(
                name=queue,
                counts=StateCounts.from_mapping(counts),
                paused=paused is not None,
                completed_total=_int_or_none(totals[0]) or 0,
                failed_total=_int_or_none(totals[1]) or 0,
                workers=int(live) if registered else None,
                oldest_wait_ms=oldest.get(queue),
                breaker=from_redis(tripped) if tripped else None,
                breaker_reason=from_redis(reason) if reason else "",
                dead_letter=bool(dead_letter) and from_redis(dead_letter) == "1",
            )
        return readings

    async def _oldest_wait(
        self, client: Redis, queues: Sequence[str], replies: list[Any]
    ) -> dict[str, int]:
        """Age of the next job in each queue's wait list, from its hash's ``timestamp``."""
        per_queue = len(ALL_STATES) + 5
        seconds, micros = replies[-1]
        now = int(seconds) * 1000 + int(micros) // 1000
        heads = {
            queue: from_redis(replies[(i + 1) * per_queue - 1])
            for i, queue in enumerate(queues)
            if replies[(i + 1) * per_queue - 1] is not None
        }
        if not heads:
            return {}
        async with client.pipeline(transaction=False) as pipe:
            for queue, job_id in heads.items():
                pipe.hget(self.keys(queue).job(job_id), "timestamp")
            stamps: list[Any] = await pipe.execute()
        return {
            queue: max(now - stamp, 0)
            for queue, raw in zip(heads, stamps, strict=True)
            if (stamp := _int_or_none(raw)) is not None
        }

    async def read_page(
        self, client: Redis, queue: str, state: str, start: int, count: int
    ) -> JobPage:
        """A page of ids with bounded LRANGE/ZRANGE, then the row fields (never job data)."""
        job_state = JobState(state)
        key = self.keys(queue).of_state(state)
        end = start + count - 1
        async with client.pipeline(transaction=False) as pipe:
            if job_state in LIST_STATES:
                # Producers push on the left, so like the engine this reads newest first.
                pipe.lrange(key, start, end)
                pipe.llen(key)
            else:
                pipe.zrange(key, start, end, desc=job_state in NEWEST_FIRST_STATES)
                pipe.zcard(key)
            raw_ids, total = await pipe.execute()
        ids = [from_redis(i) for i in raw_ids]
        async with client.pipeline(transaction=False) as pipe:
            for job_id in ids:
                pipe.hmget(self.keys(queue).job(job_id), list(_ROW_FIELDS))
            values = await pipe.execute() if ids else []
        rows = tuple(
            _row(job_id, state, [None if v is None else from_redis(v) for v in row])
            for job_id, row in zip(ids, values, strict=True)
        )
        return JobPage(queue=queue, state=state, start=start, rows=rows, total=int(total))

    async def read_active(
        self, client: Redis, queue: str, start: int, count: int
    ) -> tuple[list[ActiveJob], int]:
        """ZRANGE of ``active`` with scores (oldest first), then EXISTS lock and name per job."""
        keys = self.keys(queue)
        async with client.pipeline(transaction=False) as pipe:
            pipe.zrange(keys.active, start, start + count - 1, withscores=True)
            pipe.zcard(keys.active)
            members, total = await pipe.execute()
        async with client.pipeline(transaction=False) as pipe:
            for job_id, _ in members:
                pipe.exists(keys.lock(from_redis(job_id)))
                pipe.hmget(keys.job(from_redis(job_id)), [F.NAME, F.WORKER])
            replies = await pipe.execute() if members else []
        jobs = [
            ActiveJob(
                id=from_redis(job_id),
                name=from_redis(fields[0] or ""),
                active_since_ms=int(score),
                lock_held=bool(held),
                worker=from_redis(fields[1]) if fields[1] else None,
            )
            for (job_id, score), held, fields in zip(
                members, replies[::2], replies[1::2], strict=True
            )
        ]
        return jobs, int(total)

    async def read_job(self, client: Redis, queue: str, job_id: str) -> JobDetail | None:
        """The job hash, its state and its newest log lines; malformed hashes are flagged."""
        keys = self.keys(queue)
        async with client.pipeline(transaction=False) as pipe:
            pipe.hgetall(keys.job(job_id))
            pipe.lrange(keys.logs(job_id), -LOG_LINES, -1)
            raw_fields, raw_logs = await pipe.execute()
        if not raw_fields:
            return None
        fields = {from_redis(k): from_redis(v) for k, v in raw_fields.items()}
        logs = tuple(from_redis(line) for line in raw_logs)
        found = await read_job_state(client, keys, job_id, list_scan_limit=LPOS_MAX)
        state = found.value if found is not None else None
        raw = tuple(sorted(fields.items()))
        try:
            job = Job.from_hash(queue, job_id, fields)
        except ValueError as exc:  # CorruptJob, or a parse error it did not wrap
            return JobDetail(
                id=job_id,
                queue=queue,
                state=state,
                name=fields.get(F.NAME, ""),
                logs=logs,
                malformed=True,
                malformed_reason=getattr(exc, "reason", str(exc)),
                raw=raw,
            )
        return JobDetail(
            id=job_id,
            queue=queue,
            state=state,
            name=job.name,
            data=job.data,
            opts=job.opts,
            timestamp_ms=job.timestamp,
            processed_on_ms=job.processed_on,
            finished_on_ms=job.finished_on,
            attempts_made=job.attempts_made,
            attempts=job.attempts,
            progress=job.progress,
            returnvalue=job.returnvalue,
            failed_reason=job.failed_reason,
            stacktrace=tuple(job.stacktrace),
            logs=logs,
            worker=job.worker,
            raw=raw,
        )

    # -- flows --------------------------------------------------------------------------------

    async def read_job_links(
        self, client: Redis, queue: str, job_id: str, max_children: int
    ) -> JobLinks | None:
        """``read_flow`` one level down (children) and, for the parent, none (its own state)."""
        ref = JobRef(queue, job_id, self.prefix)
        node = await read_flow(
            client, ref, depth=1, max_children=max_children, list_scan_limit=LPOS_MAX
        )
        if node is None:
            return None
        parent: JobLink | None = None
        if node.job is not None and node.job.parent is not None:
            up = node.job.parent
            above = await read_flow(client, up, depth=0, max_children=0, list_scan_limit=LPOS_MAX)
            parent = _link(up, above)
        pending: set[JobRef] = set()
        if node.job is not None and node.job.state is JobState.WAITING_CHILDREN:
            queue_of = Queue(queue, client, prefix=self.prefix)
            pending = set((await queue_of.get_dependencies(job_id)).unprocessed)
        return JobLinks(
            job=_link(ref, node),
            parent=parent,
            children=tuple(
                _link(child.ref, child, child.ref in pending) for child in node.children
            ),
            more_children=node.truncated,
        )

    async def read_flow_path(self, client: Redis, queue: str, job_id: str) -> list[tuple[str, str]]:
        """Follow the ``parent`` fields up (one HGET each), at most ``FLOW_PATH_MAX`` jobs."""
        path = [JobRef(queue, job_id, self.prefix)]
        while len(path) < FLOW_PATH_MAX:
            raw = await client.hget(path[-1].key, F.PARENT)
            up = JobRef.from_key(from_redis(raw)) if raw else None
            if up is None or up in path:
                break
            path.append(up)
        return [(ref.queue, ref.id) for ref in reversed(path)]

    # -- workers ------------------------------------------------------------------------------

    async def read_workers(self, client: Redis, queues: Sequence[str]) -> list[WorkerRow]:
        """``Queue.get_workers`` of each queue (its heartbeat records: two round trips)."""
        rows: list[WorkerRow] = []
        for name in queues:
            for info in await Queue(name, client, prefix=self.prefix).get_workers():
                rows.append(
                    WorkerRow(
                        queue=name,
                        id=info.id,
                        host=info.host,
                        pid=info.pid,
                        concurrency=info.concurrency,
                        in_flight=info.in_flight,
                        started_ms=info.started,
                        last_beat_ms=info.last_beat,
                        expires_ms=info.expires,
                        restarts=info.restarts,
                    )
                )
        return rows

    # -- alert thresholds ---------------------------------------------------------------------

    async def read_breaches(
        self, client: Redis, queues: Sequence[str], limits: Thresholds
    ) -> list[Breach]:
        """``engine.health.check_queues``: what ``corral check`` measures and prints."""
        _, found = await check_queues(client, queues, limits, self.prefix)
        return [Breach(b.queue, b.what, str(b)) for b in found]

    # -- metrics ------------------------------------------------------------------------------

    async def read_minute_history(
        self, client: Redis, queues: Sequence[str], minutes: int
    ) -> MinuteHistory:
        """``Queue.get_metrics`` of both kinds for each queue, over minutes ending now."""
        seconds, micros = await client.time()
        now = int(seconds) * 1000 + int(micros) // 1000
        end = now - now % MINUTE_MS
        start = end - (max(minutes, 1) - 1) * MINUTE_MS
        counts: dict[str, tuple[tuple[int, int], ...]] = {}
        for name in queues:
            queue = Queue(name, client, prefix=self.prefix)
            completed = await queue.get_metrics("completed", start, end)
            failed = await queue.get_metrics("failed", start, end)
            counts[name] = tuple(
                (done.count, lost.count)
                for done, lost in zip(completed.points, failed.points, strict=True)
            )
        return MinuteHistory(end_minute_ms=end, counts=counts)

    # -- job schedulers -----------------------------------------------------------------------

    async def read_schedulers(
        self, client: Redis, queue: str, start: int, count: int
    ) -> SchedulerPage:
        """ZRANGE of ``schedulers`` (bounded), each hash read as ``JobScheduler.from_hash``,
        then the last jobs' states in two pipelined round trips."""
        keys = self.keys(queue)
        async with client.pipeline(transaction=False) as pipe:
            pipe.zrange(keys.schedulers, start, start + count - 1)
            pipe.zcard(keys.schedulers)
            pipe.time()
            raw_ids, total, (seconds, micros) = await pipe.execute()
        ids = [from_redis(i) for i in raw_ids]
        async with client.pipeline(transaction=False) as pipe:
            for scheduler_id in ids:
                pipe.hgetall(keys.scheduler(scheduler_id))
            hashes = await pipe.execute() if ids else []
        read: list[tuple[str, JobScheduler | str]] = []
        for scheduler_id, raw in zip(ids, hashes, strict=True):
            if not raw:
                continue  # removed since the ZRANGE
            fields = {from_redis(k): from_redis(v) for k, v in raw.items()}
            try:
                read.append((scheduler_id, JobScheduler.from_hash(scheduler_id, fields)))
            except (ValueError, TypeError, KeyError) as exc:  # written by something else
                read.append((scheduler_id, f"{type(exc).__name__}: {exc}"))
        last_ids = [s.last_job_id for _, s in read if isinstance(s, JobScheduler)]
        earlier = {sid: _earlier_ids(found) for sid, found in read}
        wanted = [i for i in last_ids if i] + [i for ids in earlier.values() for i in ids]
        states = await self._states(client, keys, wanted)
        rows = tuple(
            _scheduler_row(sid, found, states, earlier.get(sid, [])) for sid, found in read
        )
        now = int(seconds) * 1000 + int(micros) // 1000
        return SchedulerPage(queue=queue, start=start, rows=rows, total=int(total), now_ms=now)

    async def _states(self, client: Redis, keys: QueueKeys, ids: list[str]) -> dict[str, str]:
        """States of several jobs of one queue, as ``read_job_state`` finds them, pipelined
        (the wait and paused lists searched among ``LPOS_MAX`` entries)."""
        zstates = [s for s in ALL_STATES if s not in LIST_STATES]
        async with client.pipeline(transaction=False) as pipe:
            for job_id in ids:
                pipe.exists(keys.job(job_id))
                for state in zstates:
                    pipe.zscore(keys.of_state(state.value), job_id)
            replies = await pipe.execute() if ids else []
        per = 1 + len(zstates)
        states: dict[str, str] = {}
        unplaced: list[str] = []
        for index, job_id in enumerate(ids):
            exists, *scores = replies[index * per : (index + 1) * per]
            found = [s for s, score in zip(zstates, scores, strict=True) if score is not None]
            if found:
                states[job_id] = found[0].value
            elif exists:
                unplaced.append(job_id)
        async with client.pipeline(transaction=False) as pipe:
            for job_id in unplaced:
                pipe.lpos(keys.wait, job_id, maxlen=LPOS_MAX)
                pipe.lpos(keys.paused, job_id, maxlen=LPOS_MAX)
            positions = await pipe.execute() if unplaced else []
        for index, job_id in enumerate(unplaced):
            in_wait, in_paused = positions[2 * index : 2 * index + 2]
            if in_wait is not None:
                states[job_id] = JobState.WAIT.value
            elif in_paused is not None:
                states[job_id] = JobState.PAUSED.value
        return states

    # -- actions, all through engine.Queue ---------------------------------------------------

    async def retry_job(
        self, client: Redis, queue: str, job_id: str, state: str = "failed"
    ) -> None:
        """Send a failed or completed job back to wait (``Queue.retry_job``)."""
        async with self._engine_queue(client, queue) as q:
            await q.retry_job(job_id, state)

    async def read_job_ids(
        self, client: Redis, queue: str, state: str, start: int, count: int
    ) -> list[str]:
        """One bounded LRANGE/ZRANGE, in the order ``read_page`` shows."""
        job_state = JobState(state)
        key = self.keys(queue).of_state(state)
        end = start + count - 1
        if job_state in LIST_STATES:
            raw: list[str | bytes] = await client.lrange(key, start, end)
        else:
            desc = job_state in NEWEST_FIRST_STATES
            raw = cast("list[str | bytes]", await client.zrange(key, start, end, desc=desc))
        return [from_redis(i) for i in raw]

    async def retry_job_ids(
        self, client: Redis, queue: str, job_ids: Sequence[str], state: str
    ) -> dict[str, str | None]:
        """``Queue.retry_job_ids``, then the current state of those it did not retry."""
        async with self._engine_queue(client, queue) as q:
            done = await q.retry_job_ids(job_ids, state)
        missed = [job_id for job_id, retried in done.items() if not retried]
        states = await self._states(client, self.keys(queue), missed) if missed else {}
        return {job_id: states.get(job_id) for job_id in missed}

    async def replay_dead_letters(
        self, client: Redis, queue: str, ids: Sequence[str] | None, count: int | None
    ) -> ReplayOutcome:
        """``Queue.replay_dead_letters`` (batches of 100, one script call per origin queue)."""
        async with self._engine_queue(client, queue) as q:
            if ids is not None:
                result = await q.replay_dead_letters(list(ids))
            else:
                result = await q.replay_dead_letters(count=count)
        return ReplayOutcome(
            replayed=tuple((dl, origin, oid) for dl, (origin, oid) in result.replayed.items()),
            skipped=tuple(result.skipped.items()),
        )

    async def remove_job(self, client: Redis, queue: str, job_id: str) -> None:
        """Discard a job that no worker holds (``Queue.remove_job``)."""
        async with self._engine_queue(client, queue) as q:
            await q.remove_job(job_id)

    async def cancel_job(self, client: Redis, queue: str, job_id: str, by: str) -> bool:
        """Fail a waiting job now, or have its worker stop a running one (Queue.cancel_job)."""
        async with self._engine_queue(client, queue) as q:
            return (await q.cancel_job(job_id, by=by)).done

    async def promote_job(self, client: Redis, queue: str, job_id: str) -> None:
        """Make a delayed job ready now (``Queue.promote_job``)."""
        async with self._engine_queue(client, queue) as q:
            await q.promote_job(job_id)

    async def promote_job_ids(
        self, client: Redis, queue: str, job_ids: Sequence[str]
    ) -> dict[str, str | None]:
        """``Queue.promote_job`` of each job on one engine queue: one script call per job,
        which moves it only if it is still delayed; the others with their state now."""
        missed: dict[str, str | None] = {}
        engine_queue = Queue(
            queue, client, prefix=self.prefix, allow_unsafe_eviction=self.allow_unsafe_eviction
        )
        try:
            for job_id in job_ids:
                try:
                    await engine_queue.promote_job(job_id)
                except JobStateError as exc:
                    missed[job_id] = exc.state
                except JobNotFound:
                    missed[job_id] = None
        finally:
            await engine_queue.close()
        return missed

    async def promote_all(self, client: Redis, queue: str, count: int) -> int:
        """Promote up to ``count`` delayed jobs, earliest first (``Queue.promote_jobs``)."""
        async with self._engine_queue(client, queue) as q:
            return await q.promote_jobs(count)

    async def change_priority(self, client: Redis, queue: str, job_id: str, priority: int) -> None:
        """Reprioritize a job that is not running or finished (``Queue.change_priority``)."""
        async with self._engine_queue(client, queue) as q:
            state = await q.get_job_state(job_id)
            if state is None:
                raise ActionRefused(f"job {job_id!r} no longer exists", None)
            if state.value in ("active", "completed", "failed"):
                raise ActionRefused(f"job {job_id!r} is {state.value}", state.value)
            await q.change_priority(job_id, priority)

    async def reset_breaker(self, client: Redis, queue: str) -> bool:
        """Close the circuit breaker now (``Queue.reset_breaker``)."""
        async with self._engine_queue(client, queue) as q:
            return await q.reset_breaker()

    async def remove_breaker(self, client: Redis, queue: str) -> bool:
        """Take the circuit breaker off (``Queue.remove_breaker``)."""
        async with self._engine_queue(client, queue) as q:
            return await q.remove_breaker()

    async def pause(self, client: Redis, queue: str) -> None:
        """Pause the queue (``Queue.pause``)."""
        async with self._engine_queue(client, queue) as q:
            await q.pause()

    async def resume(self, client: Redis, queue: str) -> None:
        """Resume the queue (``Queue.resume``)."""
        async with self._engine_queue(client, queue) as q:
            await q.resume()

    async def count_finished(
        self, client: Redis, queue: str, state: str, older_than_ms: int
    ) -> int:
        """ZCOUNT of the finished set up to the server's now minus the age."""
        if state not in ("completed", "failed"):
            raise ValueError(f"state {state!r} is invalid: expected 'completed' or 'failed'")
        seconds, micros = await client.time()
        now_ms = int(seconds) * 1000 + int(micros) // 1000
        key = self.keys(queue).of_state(state)
        return int(await client.zcount(key, "-inf", now_ms - older_than_ms))

    async def clean(
        self, client: Redis, queue: str, state: str, grace_ms: int, limit: int
    ) -> list[str]:
        """Remove old completed or failed jobs (``Queue.clean``)."""
        async with self._engine_queue(client, queue) as q:
            return await q.clean(grace_ms, limit, state)

    # -- events and notifications ------------------------------------------------------------

    def events_key(self, queue: str) -> str:
        """``prefix:{queue}:events``."""
        return self.keys(queue).events

    def parse_event(self, queue: str, entry_id: str, fields: Mapping[str, str]) -> Event:
        """An entry's ``event`` and ``job_id``, the other fields kept as pairs."""
        rest = tuple((k, v) for k, v in fields.items() if k not in ("event", "job_id"))
        return Event(
            queue=queue,
            entry_id=entry_id,
            event=fields.get("event", "?"),
            job_id=fields.get("job_id", ""),
            fields=rest,
        )

    def tally_events(self, queue: str, counts: Mapping[str, int]) -> None:
        """Nothing to do: throughput comes from the engine's own ``counters`` hash."""

    def keyspace_pattern(self, db: int) -> str:
        """``__keyspace@<db>__:<prefix>:{*}:meta``: a queue created, paused or resumed.

        Only ``meta``: every job transition is a script that also appends to the queue's events
        stream, which the monitor tails anyway, so per-job key notifications (about 19 per job)
        would only cost the dashboard CPU."""
        return f"__keyspace@{db}__:{self.prefix}:{{*}}:meta"

    def queue_of_channel(self, channel: str) -> str | None:
        """The ``{queue}`` part of a keyspace channel of this prefix."""
        match = self._channel.match(channel)
        return match.group(1) if match else None

    @asynccontextmanager
    async def _engine_queue(self, client: Redis, name: str) -> AsyncIterator[Queue]:
        """An ``engine.Queue`` on the caller's client; engine state errors become
        ``ActionRefused``."""
        queue = Queue(
            name, client, prefix=self.prefix, allow_unsafe_eviction=self.allow_unsafe_eviction
        )
        try:
            yield queue
        except JobStateError as exc:
            raise ActionRefused(str(exc), exc.state) from exc
        except JobNotFound as exc:
            raise ActionRefused(str(exc), None) from exc
        finally:
            await queue.close()


def _earlier_ids(found: JobScheduler | str) -> list[str]:
    """Ids of the jobs of the ticks (``EARLIER_JOBS`` at most) before a scheduler's last job's
    tick."""
    if isinstance(found, str) or found.last_job_id is None:
        return []
    tick = found.last_job_id.removeprefix(tick_job_prefix(found.id))
    if not tick.isdigit():
        return []
    count = min(EARLIER_JOBS, found.iterations - 1)  # it made no job before its first
    return [tick_job_id(found.id, t) for t in found.timing.ticks_before(int(tick), count)]


def _scheduler_row(
    scheduler_id: str,
    found: JobScheduler | str,
    states: Mapping[str, str],
    earlier: Sequence[str] = (),
) -> SchedulerRow:
    """A scheduler as a row, or a row saying why its record could not be read."""
    if isinstance(found, str):
        return SchedulerRow(id=scheduler_id, malformed=found)
    last = found.last_job_id
    return SchedulerRow(
        id=scheduler_id,
        every_ms=found.every,
        pattern=found.pattern,
        tz=found.tz,
        next_run_ms=found.next_run,
        iterations=found.iterations,
        limit=found.timing.limit,
        end_date_ms=found.timing.end_date,
        job_name=found.job_name,
        last_job_id=last,
        last_job_state=states.get(last) if last else None,
        earlier_jobs=tuple((job_id, states.get(job_id)) for job_id in earlier),
    )


def _link(ref: JobRef, node: FlowNode | None, pending: bool = False) -> JobLink:
    """A flow node as a ``JobLink``; a node that was not found is a job that is gone."""
    job = node.job if node is not None else None
    if node is None:
        return JobLink(queue=ref.queue, id=ref.id, exists=False)
    return JobLink(
        queue=ref.queue,
        id=ref.id,
        name=job.name if job is not None else "",
        state=job.state.value if job is not None and job.state is not None else None,
        exists=job is not None,
        has_children=bool(node.children) or node.truncated,
        failed_reason=job.failed_reason if job is not None else None,
        pending=pending,
    )
