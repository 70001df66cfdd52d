"""Time (T3; T1/T2 are in test_clock_skew.py) and events (E1, E2): long delays hold, the
events stream stays within its cap, a slow reader learns of the gap, events carry no job
data."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
import redis.asyncio as aioredis
from support.invariants import assert_invariants
from support.server import FaultServer
from support.streams import stream_events
from support.workers import running_worker, wait_until

from dashboard.corral_backend import CorralBackend
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


async def test_e1_events_under_a_high_rate(fresh_server: FaultServer) -> None:
    """E1: max_events 1,000 and 20,000 jobs as fast as possible: the stream never holds more
    than the cap plus one node of approximate trimming; a reader that paused meanwhile gets a
    gap notice instead of silently missing events; the dashboard flags the gap and its counts,
    read from state, are exact."""
    url = fresh_server.url
    async with Queue("busy", url, max_events=1000) as queue:
        await queue.add("first", {})
        reader = QueueEvents("busy", url, last_id="0", block_ms=200)
        first = await reader.read()
        assert [e.event for e in first][:2] == ["added", "waiting"]
        monitor = QueueMonitor(CorralBackend(), url, poll_interval=0.2, block_ms=200)
        stream = monitor.snapshots()
        try:
            async with asyncio.timeout(20):
                async for snapshot in stream:
                    if snapshot.queue("busy") is not None:
                        break
            lengths = []
            for _ in range(20):
                await queue.add_bulk([("j", {}) for _ in range(1000)])
                lengths.append(int(await queue.client.xlen(queue.keys.events)))
            assert max(lengths) <= 1000 + 100
            events = await reader.read()
            assert events[0].event == "gap"
            async with asyncio.timeout(20):
                async for snapshot in stream:
                    busy = snapshot.queue("busy")
                    if busy is not None and busy.events_gap and busy.counts.wait == 20_001:
                        break
        finally:
            await stream.aclose()
            await reader.close()
        await assert_invariants(queue.client, "busy", wait=20_001)


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
