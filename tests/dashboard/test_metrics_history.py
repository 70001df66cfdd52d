"""The overview chart's hour, read from the server's per-minute metrics when the dashboard
starts: jobs a real worker finished before the dashboard was opened are on it at once."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis
from pilot import SIZE, make_app, until, visible_text
from support.workers import running_worker, wait_until

from dashboard.corral_backend import CorralBackend
from dashboard.model import DashboardSnapshot
from dashboard.monitor import HISTORY_MINUTES, QueueMonitor
from engine import Job, Queue
from engine.keys import QueueKeys

pytestmark = pytest.mark.timeout(60)

MINUTE_MS = 60_000


async def _work(job: Job) -> str:
    if job.data["fail"]:
        raise ValueError("asked to fail")
    return "ok"


async def _finish_with_a_worker(url: str, name: str, jobs: int) -> None:
    """``jobs`` jobs, every fourth one failing for good, run by a real worker to the end."""
    async with Queue(name, url) as queue:
        for i in range(jobs):
            await queue.add("work", {"fail": i % 4 == 0}, attempts=1)
        async with running_worker(name, _work, url, concurrency=4):

            async def finished() -> bool:
                counts = await queue.get_counts("completed", "failed")
                return counts["completed"] + counts["failed"] == jobs

            await wait_until(finished)


async def _server_minute(redis: aioredis.Redis) -> int:
    seconds, micros = await redis.time()
    now = int(seconds) * 1000 + int(micros) // 1000
    return now - now % MINUTE_MS


async def test_monitor_reads_the_last_hour_of_metrics_when_it_starts(
    redis_url: str, queue_name: str, redis: aioredis.Redis
) -> None:
    await _finish_with_a_worker(redis_url, queue_name, 20)  # 15 completed, 5 failed
    # and a minute half an hour ago, as the finishing scripts record it
    old = await _server_minute(redis) - 30 * MINUTE_MS
    keys = QueueKeys(queue_name)
    await redis.hset(keys.metrics("completed", old), "count", 7)
    await redis.hset(keys.metrics("failed", old), "count", 2)
    await redis.pexpire(keys.metrics("completed", old), 60_000)
    await redis.pexpire(keys.metrics("failed", old), 60_000)

    monitor = QueueMonitor(CorralBackend(), redis_url, queues=[queue_name], poll_interval=0.2)
    stream = monitor.snapshots()

    def has_history(snapshot: DashboardSnapshot) -> bool:
        return sum(snapshot.hour_completed) > 0

    try:
        async with asyncio.timeout(10):
            snapshot = await anext(s async for s in stream if has_history(s))
    finally:
        await stream.aclose()
    assert len(snapshot.hour_completed) == len(snapshot.hour_failed) == HISTORY_MINUTES
    assert (sum(snapshot.hour_completed), sum(snapshot.hour_failed)) == (15 + 7, 5 + 2)
    end = monitor._history_end
    assert end is not None
    at = HISTORY_MINUTES - 1 - (end - old) // MINUTE_MS
    assert (snapshot.hour_completed[at], snapshot.hour_failed[at]) == (7, 2)
    assert sum(snapshot.completed_history) == 0  # nothing finished while it watched


async def test_history_keeps_up_with_new_minutes(redis_url: str, queue_name: str) -> None:
    async with Queue(queue_name, redis_url) as queue:
        await queue.add("work", {"fail": False})
    monitor = QueueMonitor(
        CorralBackend(), redis_url, queues=[queue_name], poll_interval=0.2, history_interval=0.2
    )
    stream = monitor.snapshots()
    try:
        async with asyncio.timeout(20):
            first = await anext(s async for s in stream if s.hour_completed)
            assert sum(first.hour_completed) == 0
            async with running_worker(queue_name, _work, redis_url):
                later = await anext(s async for s in stream if sum(s.hour_completed) == 1)
    finally:
        await stream.aclose()
    assert sum(later.hour_failed) == 0


async def test_overview_chart_shows_the_hour_and_the_minute(
    redis_url: str, queue_name: str
) -> None:
    await _finish_with_a_worker(redis_url, queue_name, 8)  # 6 completed, 2 failed
    app = make_app(redis_url, queue_name)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.snapshot is not None and sum(app.snapshot.hour_failed) == 2)
        await pilot.pause(0.3)
        assert app.snapshot is not None and sum(app.snapshot.hour_completed) == 6
        text = visible_text(app)
        assert "last hour, jobs/min" in text and "last minute, jobs/s" in text
        assert "-59m" in text and "now" in text
