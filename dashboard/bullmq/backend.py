"""``BullMQBackend``: the dashboard's ``Backend`` for queues in BullMQ's layout (v5 and v6).

Every read is a bounded, read-only command (LLEN/ZCARD, LRANGE/ZRANGE of one page, HMGET, LPOS
with MAXLEN, SRANDMEMBER/HRANDFIELD samples, SCAN, XREAD, CLIENT LIST), pipelined: no Lua and no
write, so it is safe beside running Node workers and under a read-only ACL user. BullMQ's own
``getCounts``/``getRanges`` scripts are not used: they may RPOP legacy markers, a write; nor is
Node's ``getJobSchedulers``, which deletes the schedulers it cannot read. Workers, schedulers,
flows and the per-minute history are read in ``workers.py``, ``schedulers.py``, ``flows.py`` and
``history.py``.

Actions go to ``BullMQActor`` (``acting.py``): BullMQ's own scripts through the official
``bullmq`` package, after a fresh read of the queue's layout; nothing of that package is touched
until an action runs, so a read-only dashboard never constructs one of its queues.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any, cast

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from dashboard.backend import ActionRefused, FeatureUnavailable, QueueReading
from dashboard.bullmq import flows, history, schedulers
from dashboard.bullmq.acting import BullMQActor, BullMQRefusal
from dashboard.bullmq.job_reads import read_active_jobs, read_job_detail
from dashboard.bullmq.jobs import ROW_FIELDS, job_row
from dashboard.bullmq.keys import (
    DEFAULT_BULL_PREFIX,
    LIST_STATES,
    BullKeys,
    validate_bull_prefix,
)
from dashboard.bullmq.layout import QueueLayout, detect_layout
from dashboard.bullmq.replies import as_int, server_ms
from dashboard.bullmq.workers import count_workers, worker_rows
from dashboard.model import (
    STATE_ORDER,
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
from dashboard.sanitize import from_redis
from engine.health import Thresholds

SCAN_COUNT = 1_000
ASCENDING_STATES = frozenset({"delayed", "prioritized"})
"""Sorted sets paged lowest score first: the job that runs next comes first."""
LEGACY_MARKER = "0:"
"""Pre-v5 delay markers left in ``wait``/``paused``; they are not jobs (BullMQ skips them)."""


class BullMQViewUnavailable(FeatureUnavailable):
    """A view this version cannot show for BullMQ queues (the alert thresholds check): the
    dashboard reports it instead of showing made-up data."""

    def __init__(self, what: str) -> None:
        super().__init__(f"the {what} is not available for BullMQ queues in this version")


class WorkersUnreadable(FeatureUnavailable):
    """The server refused ``CLIENT LIST`` (an ACL, or a managed service): BullMQ keeps no other
    record of its workers."""


class BullMQBackend:
    """The ``Backend`` for BullMQ queues under one prefix (``bull`` unless the app chose one)."""

    def __init__(self, prefix: str = DEFAULT_BULL_PREFIX) -> None:
        self.prefix = validate_bull_prefix(prefix)
        self.layouts: dict[str, QueueLayout] = {}
        """Each queue's layout as of its last counts read."""
        self._finished: dict[str, list[int]] = {}
        """Completed and failed events parsed per queue: the live throughput counters."""
        self.actor = BullMQActor(self.prefix)
        """Runs the actions; it constructs the bullmq package's objects only when one runs."""

    def keys(self, queue: str) -> BullKeys:
        """The keys of one queue."""
        return BullKeys(self.prefix, queue)

    # -- discovery and counts ----------------------------------------------------------------

    async def discover_queues(self, client: Redis) -> list[str]:
        """Every queue with a ``meta`` hash under the prefix (SCAN with MATCH and COUNT).

        BullMQ writes ``meta`` on the first add and in every ``Queue`` constructor, so a queue
        only a FlowProducer or a worker touched is found too.
        """
        found: set[str] = set()
        pattern = BullKeys.meta_pattern(self.prefix)
        async for key in client.scan_iter(match=pattern, count=SCAN_COUNT):
            name = BullKeys.queue_of_meta_key(from_redis(key), self.prefix)
            if name is not None:
                found.add(name)
        return sorted(found)

    async def read_counts(self, client: Redis, queues: Sequence[str]) -> dict[str, QueueReading]:
        """One pipeline: every state's size, meta flags, the next job to run, workers, the time."""
        per_queue = len(STATE_ORDER) + 3
        async with client.pipeline(transaction=False) as pipe:
            for queue in queues:
                keys = self.keys(queue)
                for state in STATE_ORDER:
                    if state in LIST_STATES:
                        pipe.llen(keys.state(state))
                    else:
                        pipe.zcard(keys.state(state))
                pipe.hmget(keys.meta, ["paused", "version"])
                pipe.lindex(keys.wait, -1)  # the next job to run: the oldest FIFO job
                pipe.lindex(keys.paused, -1)
            pipe.client_list()
            pipe.time()
            replies: list[Any] = await pipe.execute(raise_on_error=False)
        for reply in replies[: per_queue * len(queues)]:
            if isinstance(reply, Exception):
                raise reply
        clients, server_time = replies[-2], replies[-1]
        # CLIENT LIST may be refused (ACL, managed services): then workers are unknown
        workers = (
            None if isinstance(clients, Exception) else count_workers(clients, self.prefix, queues)
        )
        readings: dict[str, QueueReading] = {}
        heads: dict[str, str] = {}
        for index, queue in enumerate(queues):
            chunk = replies[index * per_queue : (index + 1) * per_queue]
            sizes = dict(zip(STATE_ORDER, (int(n) for n in chunk), strict=False))
            (paused_flag, version), wait_tail, paused_tail = chunk[len(STATE_ORDER) :]
            for state, tail in (("wait", wait_tail), ("paused", paused_tail)):
                if tail is not None and from_redis(tail).startswith(LEGACY_MARKER):
                    sizes[state] = max(sizes[state] - 1, 0)  # as BullMQ's getCounts reports it
            if wait_tail is not None and not from_redis(wait_tail).startswith(LEGACY_MARKER):
                heads[queue] = from_redis(wait_tail)
            paused = paused_flag is not None
            self.layouts[queue] = detect_layout(
                None if version is None else from_redis(version),
                paused,
                sizes["wait"],
                sizes["paused"],
            )
            completed, failed = self._finished.setdefault(queue, [0, 0])
            readings[queue] = QueueReading(
                name=queue,
                counts=StateCounts.from_mapping(sizes),
                paused=paused,
                completed_total=completed,
                failed_total=failed,
                workers=None if workers is None else workers[queue],
            )
        now_ms = server_ms(server_time)  # TIME is not in ACL's @read: then the local clock
        for queue, age in (await self._wait_ages(client, heads, now_ms)).items():
            readings[queue] = replace(readings[queue], oldest_wait_ms=age)
        return readings

    async def _wait_ages(
        self, client: Redis, heads: Mapping[str, str], now_ms: int
    ) -> dict[str, int]:
        """How long the next job of each queue has waited, from its ``timestamp`` field."""
        if not heads:
            return {}
        async with client.pipeline(transaction=False) as pipe:
            for queue, job_id in heads.items():
                pipe.hget(self.keys(queue).job(job_id), "timestamp")
            stamps: list[Any] = await pipe.execute()
        return {
            queue: max(now_ms - stamp, 0)
            for queue, raw in zip(heads, stamps, strict=True)
            if (stamp := as_int(raw)) is not None
        }

    async def read_layout(self, client: Redis, queue: str) -> QueueLayout:
        """The queue's layout (v5 or v6 pausing, mixed or not), read now."""
        keys = self.keys(queue)
        async with client.pipeline(transaction=False) as pipe:
            pipe.hmget(keys.meta, ["paused", "version"])
            pipe.llen(keys.wait)
            pipe.llen(keys.paused)
            (paused, version), wait_len, paused_len = await pipe.execute()
        layout = detect_layout(
            None if version is None else from_redis(version),
            paused is not None,
            int(wait_len),
            int(paused_len),
        )
        self.layouts[queue] = layout
        return layout

    async def read_metrics(
        self, client: Redis, queue: str, kind: str, points: int = 60
    ) -> tuple[int | None, list[int]]:
        """BullMQ's per-minute metrics of ``kind`` (completed/failed): the lifetime ``count``
        (None when no worker records metrics) and up to ``points`` minutes, newest first."""
        if kind not in ("completed", "failed"):
            raise ValueError(f"metrics kind {kind!r} is invalid: expected 'completed' or 'failed'")
        keys = self.keys(queue)
        async with client.pipeline(transaction=False) as pipe:
            pipe.hget(keys.metrics(kind), "count")
            pipe.lrange(keys.metrics_data(kind), 0, max(points, 1) - 1)
            count, data = await pipe.execute()
        return as_int(count), [as_int(point) or 0 for point in data]

    # -- pages, active jobs, one job ---------------------------------------------------------

    async def read_page(
        self, client: Redis, queue: str, state: str, start: int, count: int
    ) -> JobPage:
        """``count`` ids of ``state`` from ``start`` (one LRANGE/ZRANGE), then their row fields.

        Lists page newest first (BullMQ's default order); delayed and prioritized jobs page in
        the order they will run; finished jobs and waiting parents newest first.
        """
        keys = self.keys(queue)
        key = keys.state(state)
        end = start + count - 1
        async with client.pipeline(transaction=False) as pipe:
            if state in LIST_STATES:
                pipe.lrange(key, start, end)
                pipe.llen(key)
            else:
                pipe.zrange(key, start, end, desc=state not in ASCENDING_STATES)
                pipe.zcard(key)
            raw_ids, total = await pipe.execute()
        ids = [from_redis(i) for i in raw_ids]
        if state in ("wait", "paused"):
            ids = [i for i in ids if not i.startswith(LEGACY_MARKER)]
        async with client.pipeline(transaction=False) as pipe:
            for job_id in ids:
                pipe.hmget(keys.job(job_id), list(ROW_FIELDS))
            values: list[Any] = await pipe.execute() if ids else []
        rows = tuple(
            job_row(job_id, state, [None if v is None else from_redis(v) for v in row])
            for job_id, row in zip(ids, values, strict=True)
        )
        return JobPage(queue=queue, state=state, start=start, rows=rows, total=int(total))

    async def read_active(
        self, client: Redis, queue: str, start: int, count: int
    ) -> tuple[list[ActiveJob], int]:
        """Active jobs longest-running first and whether each still has its lock."""
        return await read_active_jobs(client, self.keys(queue), start, count)

    async def read_job(self, client: Redis, queue: str, job_id: str) -> JobDetail | None:
        """The job hash with its state, logs, due time and flow links, in one pipeline."""
        return await read_job_detail(client, self.keys(queue), job_id)

    # -- events and notifications ------------------------------------------------------------

    def events_key(self, queue: str) -> str:
        """``<prefix>:<queue>:events``."""
        return self.keys(queue).events

    def parse_event(self, queue: str, entry_id: str, fields: Mapping[str, str]) -> Event:
        """An entry's ``event`` and ``jobId``, the other fields kept as pairs."""
        name = fields.get("event", "?")
        rest = tuple((k, v) for k, v in fields.items() if k not in ("event", "jobId"))
        return Event(
            queue=queue,
            entry_id=entry_id,
            event=name,
            job_id=fields.get("jobId", ""),
            fields=rest,
        )

    def tally_events(self, queue: str, counts: Mapping[str, int]) -> None:
        """Counts ``completed`` and ``failed`` (final failures only, in BullMQ) per queue: these
        counters are the totals ``read_counts`` reports, so throughput comes from the stream."""
        completed, failed = counts.get("completed", 0), counts.get("failed", 0)
        if completed or failed:
            totals = self._finished.setdefault(queue, [0, 0])
            totals[0] += completed
            totals[1] += failed

    def keyspace_pattern(self, db: int) -> str:
        """``__keyspace@<db>__:<prefix>:*:meta``: a queue created, paused or resumed.

        Only ``meta``: every job transition is a script that also appends to the queue's events
        stream, which the monitor tails anyway, and both majors' pause script writes ``meta``
        (HSET/HDEL ``paused``) besides its ``paused``/``resumed`` event (which BullMQ 6 may
        skip), so per-job key notifications (about 20 per job) would only cost the dashboard
        CPU and, at a few thousand jobs a second, its pub/sub connection."""
        return f"__keyspace@{db}__:{BullKeys.meta_pattern(self.prefix)}"

    def queue_of_channel(self, channel: str) -> str | None:
        """The queue whose ``meta`` key a keyspace channel is about (as discovery finds it)."""
        _, sep, key = channel.partition("__:")
        return BullKeys.queue_of_meta_key(key, self.prefix) if sep else None

    async def count_finished(
        self, client: Redis, queue: str, state: str, older_than_ms: int
    ) -> int:
        """ZCOUNT of BullMQ's completed or failed set (scored by ``finishedOn``) up to the
        server's now minus the age; the local clock where ``TIME`` is refused."""
        if state not in ("completed", "failed"):
            raise ValueError(f"state {state!r} is invalid: expected 'completed' or 'failed'")
        try:
            seconds, micros = await client.time()
            now_ms = int(seconds) * 1000 + int(micros) // 1000
        except ResponseError:
            now_ms = int(time.time() * 1000)
        key = self.keys(queue).state(state)
        return int(await client.zcount(key, "-inf", now_ms - older_than_ms))

    # -- flows, workers, schedulers, metrics ---------------------------------------------------

    async def read_job_links(
        self, client: Redis, queue: str, job_id: str, max_children: int
    ) -> JobLinks | None:
        """The job's parent (``parent``/``parentKey``) and first children, with their states."""
        return await flows.read_job_links(client, self.prefix, queue, job_id, max_children)

    async def read_flow_path(self, client: Redis, queue: str, job_id: str) -> list[tuple[str, str]]:
        """Parent links followed up to the flow's root (one HMGET each)."""
        return await flows.read_flow_path(client, self.prefix, queue, job_id)

    async def read_workers(self, client: Redis, queues: Sequence[str]) -> list[WorkerRow]:
        """The worker connections in ``CLIENT LIST`` (what Node's ``getWorkers`` returns), with
        their age and idle time counted back from this machine's clock, which the workers view
        measures against."""
        try:
            clients = await client.client_list()
        except ResponseError as exc:
            raise WorkersUnreadable(
                "workers unknown: the server refused CLIENT LIST, and BullMQ records its "
                f"workers nowhere else ({exc})"
            ) from exc
        return worker_rows(clients, self.prefix, queues, int(time.time() * 1000))

    async def read_schedulers(
        self, client: Redis, queue: str, start: int, count: int
    ) -> SchedulerPage:
        """Job schedulers and legacy repeatable jobs, soonest next run first."""
        return await schedulers.read_schedulers(client, self.keys(queue), start, count)

    async def read_breaches(
        self, client: Redis, queues: Sequence[str], limits: Thresholds
    ) -> list[Breach]:
        """Not available: ``corral check`` measures Corral queues only."""
        raise BullMQViewUnavailable("alert thresholds check")

    async def read_minute_history(
        self, client: Redis, queues: Sequence[str], minutes: int
    ) -> MinuteHistory:
        """Jobs per minute from BullMQ's metrics (zero where workers record none)."""
        return await history.read_minute_history(client, self.prefix, queues, minutes)

    # -- actions: BullMQ's own scripts, through the bullmq package ---------------------------

    async def cancel_job(self, client: Redis, queue: str, job_id: str, by: str) -> bool:
        """BullMQ has no cancellation of a job from outside its worker."""
        raise BullMQRefusal(
            "cancel refused: BullMQ cannot stop a job from outside its worker (only the worker "
            "holding the job's lock can end it)"
        )

    async def retry_job(
        self, client: Redis, queue: str, job_id: str, state: str = "failed"
    ) -> None:
        """A failed or completed job back to wait (``Job.retry(state)``)."""
        layout = await self.read_layout(client, queue)
        await self.actor.retry(client, queue, job_id, layout, state)

    async def read_job_ids(
        self, client: Redis, queue: str, state: str, start: int, count: int
    ) -> list[str]:
        """Ids of ``state`` from ``start`` in the order ``read_page`` shows (one range read)."""
        key = self.keys(queue).state(state)
        end = start + count - 1
        raw: list[Any]
        if state in LIST_STATES:
            raw = await client.lrange(key, start, end)
        else:
            raw = await client.zrange(key, start, end, desc=state not in ASCENDING_STATES)
        ids = [from_redis(cast("str | bytes", i)) for i in raw]
        return [i for i in ids if not i.startswith(LEGACY_MARKER)]

    async def retry_job_ids(
        self, client: Redis, queue: str, job_ids: Sequence[str], state: str
    ) -> dict[str, str | None]:
        """``Job.retry(state)`` on each job still in ``state``; the others with the state
        they are in now (None: gone)."""
        layout = await self.read_layout(client, queue)
        missed: dict[str, str | None] = {}
        for job_id in job_ids:
            try:
                await self.actor.retry(client, queue, job_id, layout, state)
            except ActionRefused as exc:
                missed[job_id] = exc.state
        return missed

    async def replay_dead_letters(
        self, client: Redis, queue: str, ids: Sequence[str] | None, count: int | None
    ) -> ReplayOutcome:
        """BullMQ has no dead-letter queues: nothing to replay."""
        raise BullMQRefusal("replay refused: BullMQ has no dead-letter queues")

    async def remove_job(self, client: Redis, queue: str, job_id: str) -> None:
        """Discard a job no worker holds, with its children (``Queue.remove``)."""
        await self.actor.remove(client, queue, job_id)

    async def promote_job(self, client: Redis, queue: str, job_id: str) -> None:
        """A delayed job ready now (``Job.promote``)."""
        await self.actor.promote(client, queue, job_id, await self.read_layout(client, queue))

    async def promote_all(self, client: Redis, queue: str, count: int) -> int:
        """Every delayed job ready now (``Queue.promoteJobs``; ``count`` does not cap it)."""
        return await self.actor.promote_all(client, queue, await self.read_layout(client, queue))

    async def change_priority(self, client: Redis, queue: str, job_id: str, priority: int) -> None:
        """A new priority for a job that is not running (``Job.changePriority``)."""
        layout = await self.read_layout(client, queue)
        await self.actor.change_priority(client, queue, job_id, priority, layout)

    async def reset_breaker(self, client: Redis, queue: str) -> bool:
        """BullMQ has no circuit breakers."""
        raise BullMQRefusal("breaker reset refused: BullMQ has no circuit breakers")

    async def remove_breaker(self, client: Redis, queue: str) -> bool:
        """BullMQ has no circuit breakers."""
        raise BullMQRefusal("breaker removal refused: BullMQ has no circuit breakers")

    async def pause(self, client: Redis, queue: str) -> None:
        """Pause with BullMQ 6's script (``Queue.pause``), refused on BullMQ 5 queues."""
        await self.actor.pause(client, queue, await self.read_layout(client, queue))

    async def resume(self, client: Redis, queue: str) -> None:
        """Resume (``Queue.resume``), refused on a queue both majors wrote to."""
        await self.actor.resume(client, queue, await self.read_layout(client, queue))

    async def clean(
        self, client: Redis, queue: str, state: str, grace_ms: int, limit: int
    ) -> list[str]:
        """Remove old completed or failed jobs (``Queue.clean``)."""
        return await self.actor.clean(client, queue, state, grace_ms, limit)
