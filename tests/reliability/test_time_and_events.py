"""Time (T3; T1/T2 are in test_clock_skew.py) and events (E1, E2): long delays hold, the
events stream stays within its cap, a slow reader learns of the gap, events carry no job
data."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis
from support.invariants import assert_invariants
from support.server import FaultServer
from support.streams import stream_events
from support.workers import WorkerProcess, running_worker, wait_until

from dashboard.corral_backend import CorralBackend
from dashboard.model import QueueSnapshot, StateCounts
from dashboard.monitor import QueueMonitor
from engine import Job, Queue, QueueEvents
from engine.errors import InvalidJobOptions, PayloadTooLarge

pytestmark = pytest.mark.timeout(90)

YEAR_MS = 365 * 24 * 3600 * 1000


async def _completed(queue: Queue, n: int) -> bool:
    return (await queue.get_totals())[0] >= n


async def test_t3_long_delays_run_once_at_their_time(redis_url: str, queue_name: str) -> None:
    """T3: 1,000 jobs delayed past the lock (1.5 s > 1 s) each run exactly once, not before
    their time on the server clock; jobs delayed a year stay delayed; a negative delay is
    refused with a clear error."""
    runs: list[str] = []

    async def process(job: Job) -> Any:
        runs.append(job.id)

    async with Queue(queue_name, redis_url) as queue:
        with pytest.raises(InvalidJobOptions, match="delay"):
            await queue.add("j", {}, delay=-5)
        soon = await queue.add_bulk([("soon", {}, {"delay": 1500}) for _ in range(1000)])
        later = await queue.add_bulk([("later", {}, {"delay": YEAR_MS}) for _ in range(5)])
        async with running_worker(
            queue_name, process, redis_url, concurrency=20, lock_duration=1000,
            stalled_interval=200,
        ):  # fmt: skip
            await wait_until(lambda: _completed(queue, 1000), within=40)
            await asyncio.sleep(0.5)  # nothing runs twice afterwards
        assert sorted(runs) == sorted(j.id for j in soon)
        for job in soon[::50]:
            done = await queue.get_job(job.id)
            assert done is not None and done.processed_on is not None
            assert done.processed_on >= done.timestamp + 1500
        for job in later:
            assert await queue.get_job_state(job.id) == "delayed"
        await assert_invariants(queue.client, queue_name, completed=1000, delayed=5)


# E1 at the plan's size: 50,000 jobs added as fast as one producer can (bulk adds of 1,000),
# a worker process running them meanwhile, the events capped at 1,000 (MAXLEN ~: trimmed a whole
# stream node at a time, so up to a node of 100 entries over); one reader paused for 10 s.
E1_JOBS = 50_000
E1_BATCH = 1_000
E1_CAP = 1_000
E1_NODE = 100  # stream-node-max-entries (the server's default): the trim slack
E1_PAUSE_S = 10.0


@pytest.mark.timeout(120)
async def test_e1_events_under_a_high_rate(
    fresh_server: FaultServer, procs: list[WorkerProcess]
) -> None:
    """E1: max_events 1,000 and 50,000 jobs as fast as possible while a worker runs them: a
    task polling XLEN back to back all along sees the stream within [cap, cap + one node] once
    it is full; a reader paused for 10 s then gets a gap notice (its last id is older than the
    oldest entry kept), recounts from the queue's state and reads on to the newest entry; the
    dashboard's monitor flags the gap and ends with the true counts."""
    url = fresh_server.url
    jobs = E1_JOBS + 1
    async with Queue("busy", url, max_events=E1_CAP) as queue:
        await queue.add("first", {})
        reader = QueueEvents("busy", url, last_id="0", block_ms=200)
        first = await reader.read()
        assert [e.event for e in first][:2] == ["added", "waiting"]
        paused_at = reader.last_id
        monitor = QueueMonitor(CorralBackend(), url, poll_interval=0.2, block_ms=200)
        stream = monitor.snapshots()
        flagged: list[float] = []
        latest: list[QueueSnapshot] = []

        async def watch() -> None:  # the dashboard, live all along
            async for snapshot in stream:
                busy = snapshot.queue("busy")
                if busy is not None:
                    latest[:] = [busy]
                    if busy.events_gap:
                        flagged.append(time.monotonic())

        lengths: list[int] = []
        adding = threading.Event()

        def sample() -> None:  # XLEN back to back, from a thread: not paced by the event loop
            with redis.Redis.from_url(url) as sampler:
                while adding.is_set():
                    lengths.append(int(sampler.xlen(queue.keys.events)))

        watcher = asyncio.create_task(watch())
        try:
            await wait_until(lambda: _shown(latest), within=20)
            procs.append(WorkerProcess("support.jobs:noop", "busy", url, concurrency=50))
            adding.set()
            polling = asyncio.create_task(asyncio.to_thread(sample))
            await wait_until(lambda: _shown(lengths), within=10, interval=0.001)
            started = time.monotonic()
            for _ in range(E1_JOBS // E1_BATCH):
                await queue.add_bulk([("j", {}) for _ in range(E1_BATCH)])
            adding.clear()
            await polling
            full = next(i for i, n in enumerate(lengths) if n >= E1_CAP)
            # sampled all along: more often than the adds' scripts ran (one per 100 jobs)
            assert full > 0 and len(lengths) - full >= E1_JOBS // 100, (len(lengths), full)
            assert E1_CAP <= min(lengths[full:]) <= max(lengths) <= E1_CAP + E1_NODE, (
                min(lengths[full:]),
                max(lengths),
            )
            # the reader stays paused for 10 s from the first add (longer if the adds took longer)
            await asyncio.sleep(max(0.0, started + E1_PAUSE_S - time.monotonic()))
            oldest = (await queue.client.xinfo_stream(queue.keys.events))["first-entry"][0]
            assert _id(paused_at) < _id(str(oldest))  # what it would read next is gone
            events = await reader.read()
            gap = events[0]
            assert (gap.event, gap.id) == ("gap", paused_at)
            assert _id(paused_at) < _id(gap.fields["trimmed_to"])
            resynced = await queue.get_counts()  # what a reader told of a gap does: recount
            assert sum(resynced.values()) == jobs

            await wait_until(lambda: _completed(queue, jobs), within=60)
            while events:  # and it reads on to the newest entry
                events = await reader.read()
            info = await queue.client.xinfo_stream(queue.keys.events)
            assert reader.last_id == info["last-generated-id"]
            truth = StateCounts.from_mapping(await queue.get_counts())
            assert truth.completed == jobs
            await wait_until(lambda: _shows(latest, truth), within=20)
            assert flagged, "the monitor never flagged the gap"
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
            await stream.aclose()
            await reader.close()
            adding.clear()
        await assert_invariants(queue.client, "busy", completed=jobs)


async def _shown(seen: list[Any]) -> bool:
    return bool(seen)


async def _shows(latest: list[QueueSnapshot], truth: StateCounts) -> bool:
    return bool(latest) and latest[0].counts == truth


def _id(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


async def test_e2_events_carry_no_job_data_and_results_are_capped(
    redis_url: str, queue_name: str, redis: aioredis.Redis
) -> None:
    """E2: no event carries the job's data; the completed event carries the return value,
    which is capped like the data, so a too-large result fails the job instead."""
    secret = "data-only-" + "x" * 50

    async def process(job: Job) -> Any:
        if job.data.get("big"):
            return "y" * 2_000
        return {"ok": True}

    async with Queue(queue_name, redis_url) as queue:
        small = await queue.add("small", {"secret": secret})
        big = await queue.add("big", {"secret": secret, "big": True})
        async with running_worker(queue_name, process, redis_url, max_result_size=1_000):
            await wait_until(lambda: _finished(queue, 2), within=20)
        events = await stream_events(redis, queue_name)
        assert all(secret not in value for e in events for value in e.values())
        completed = [e for e in events if e["event"] == "completed"]
        assert [(e["job_id"], json.loads(e["returnvalue"])) for e in completed] == [
            (small.id, {"ok": True})
        ]
        failed = await queue.get_job(big.id)
        assert failed is not None and failed.failed_reason is not None
        assert PayloadTooLarge.__name__ in failed.failed_reason or "1000" in failed.failed_reason
        await assert_invariants(redis, queue_name, completed=1, failed=1)


async def _finished(queue: Queue, n: int) -> bool:
    done, failed = await queue.get_totals()
    return done + failed >= n
