"""QueueMonitor against a real server: exact counts, polling vs live, gaps, reconnects."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol

import pytest
import redis.asyncio as aioredis
from support.workers import wait_until
from workload import finish_jobs

from dashboard.corral_backend import CorralBackend
from dashboard.model import DashboardSnapshot, Mode
from dashboard.monitor import QueueMonitor
from dashboard.notifications import enable_command, keyspace_enabled
from engine import Breaker, Job, Worker
from engine.keys import QueueKeys
from engine.queue import Queue

pytestmark = pytest.mark.timeout(30)

Check = Callable[[DashboardSnapshot], bool]


class FaultServer(Protocol):
    """What these tests use of the ``fresh_server`` fixture."""

    @property
    def url(self) -> str: ...
    def kill(self) -> None: ...
    def restart(self) -> Any: ...
    def config_set(self, name: str, value: str) -> None: ...
    def client(self) -> Any: ...


async def wait_for(stream: AsyncIterator[DashboardSnapshot], check: Check) -> DashboardSnapshot:
    """The first snapshot that passes ``check`` (within 10 s).

    The stream is iterated in the caller's task, the one that closes it too.
    """
    async with asyncio.timeout(10):
        async for snapshot in stream:
            if check(snapshot):
                return snapshot
    raise AssertionError("the monitor stopped")


async def add_and_finish(url: str, name: str) -> None:
    """5 wait, 3 completed, 2 failed, 1 delayed."""
    async with Queue(name, url) as queue:
        for i in range(10):
            await queue.add("send", {"i": i})
        await queue.add("later", {}, delay=60_000)
        await finish_jobs(queue, complete=3, fail=2)


def test_keyspace_flags() -> None:
    assert keyspace_enabled("KEA")
    assert keyspace_enabled("Klz")
    assert not keyspace_enabled("")
    assert not keyspace_enabled("EA")
    assert not keyspace_enabled("Kh")
    assert enable_command("") == "CONFIG SET notify-keyspace-events Khlz"
    assert enable_command("Ex") == "CONFIG SET notify-keyspace-events ExKhlz"
    assert enable_command("EA") == "CONFIG SET notify-keyspace-events EAK"


async def test_counts_are_exact_and_queues_discovered(redis_url: str, queue_name: str) -> None:
    await add_and_finish(redis_url, queue_name)
    monitor = QueueMonitor(CorralBackend(), redis_url, poll_interval=0.2)
    stream = monitor.snapshots()
    try:
        snapshot = await wait_for(stream, lambda s: s.queue(queue_name) is not None)
    finally:
        await stream.aclose()
    queue = snapshot.queue(queue_name)
    assert queue is not None
    assert queue.counts.as_dict() == {
        "wait": 5,
        "active": 0,
        "delayed": 1,
        "prioritized": 0,
        "failed": 2,
        "completed": 3,
        "paused": 0,
        "waiting-children": 0,
    }
    assert snapshot.mode is Mode.POLLING  # the session server has notifications off
    assert snapshot.as_of is not None


async def test_age_of_the_oldest_waiting_job(redis_url: str, queue_name: str) -> None:
    async with Queue(queue_name, redis_url) as queue:
        await queue.add("first", {})
        await asyncio.sleep(0.4)
        await queue.add("second", {})
    monitor = QueueMonitor(CorralBackend(), redis_url, poll_interval=0.2)
    stream = monitor.snapshots()
    try:
        snapshot = await wait_for(stream, lambda s: s.queue(queue_name) is not None)
    finally:
        await stream.aclose()
    queue_snapshot = snapshot.queue(queue_name)
    assert queue_snapshot is not None
    age = queue_snapshot.oldest_wait_age_ms
    assert age is not None
    assert 400 <= age < 5_000  # the first job's age (it runs next), not the second's


async def test_polling_follows_changes_and_rates(redis_url: str, queue_name: str) -> None:
    await add_and_finish(redis_url, queue_name)
    monitor = QueueMonitor(CorralBackend(), redis_url, queues=[queue_name], poll_interval=0.2)
    stream = monitor.snapshots()
    try:
        await wait_for(stream, lambda s: s.queue(queue_name) is not None)
        async with Queue(queue_name, redis_url) as queue:
            await finish_jobs(queue, complete=4, fail=1)
            await queue.pause()
        snapshot = await wait_for(
            stream,
            lambda s: (q := s.queue(queue_name)) is not None and q.paused and q.history != (),
        )
    finally:
        await stream.aclose()
    queue_snapshot = snapshot.queue(queue_name)
    assert queue_snapshot is not None
    assert queue_snapshot.counts.completed == 7
    assert queue_snapshot.counts.failed == 3
    assert queue_snapshot.counts.paused == 0  # all ready jobs were taken before the pause
    assert sum(snapshot.completed_history) > 0
    assert any(e.event == "paused" for e in snapshot.recent_events)


async def test_live_mode_when_notifications_are_on(fresh_server: FaultServer) -> None:
    fresh_server.config_set("notify-keyspace-events", "KEA")
    monitor = QueueMonitor(CorralBackend(), fresh_server.url, queues=["live"], poll_interval=30)
    stream = monitor.snapshots()
    try:
        await wait_for(stream, lambda s: s.mode is Mode.LIVE and s.queue("live") is not None)
        async with Queue("live", fresh_server.url) as queue:
            await queue.add("send", {})
            await queue.add("send", {})
        snapshot = await wait_for(
            stream, lambda s: (q := s.queue("live")) is not None and q.counts.wait == 2
        )
    finally:
        await stream.aclose()
    assert snapshot.mode is Mode.LIVE


async def test_never_turns_notifications_on(fresh_server: FaultServer) -> None:
    monitor = QueueMonitor(CorralBackend(), fresh_server.url, queues=["q"], poll_interval=0.2)
    stream = monitor.snapshots()
    try:
        snapshot = await wait_for(stream, lambda s: s.queue("q") is not None)
    finally:
        await stream.aclose()
    assert snapshot.mode is Mode.POLLING
    client = fresh_server.client()
    try:
        assert client.config_get("notify-keyspace-events")["notify-keyspace-events"] == ""
    finally:
        client.close()


async def test_gap_after_trim_is_reported_and_counts_resynced(
    redis_url: str, queue_name: str, redis: aioredis.Redis
) -> None:
    await add_and_finish(redis_url, queue_name)
    # a poll far away: only the gap can make the monitor count again within this test
    monitor = QueueMonitor(
        CorralBackend(), redis_url, queues=[queue_name], poll_interval=60, block_ms=100
    )
    stream = monitor.snapshots()
    keys = QueueKeys(queue_name)
    try:
        first = await wait_for(stream, lambda s: s.queue(queue_name) is not None)
        before = first.queue(queue_name)
        assert before is not None and before.counts.wait == 5

        async def tailing() -> bool:  # the tail has read the stream once (it runs on)
            return queue_name in monitor.tail.last_ids

        await wait_until(tailing)
        async with redis.pipeline(transaction=True) as pipe:  # added and trimmed at once
            for i in range(5):
                pipe.hset(keys.job(f"x{i}"), mapping={"name": "late", "timestamp": "1"})
                pipe.lpush(keys.wait, f"x{i}")
                pipe.xadd(keys.events, {"event": "waiting", "job_id": f"x{i}"})
            pipe.xtrim(keys.events, maxlen=0, approximate=False)
            await pipe.execute()
        snapshot = await wait_for(
            stream,
            lambda s: (
                (q := s.queue(queue_name)) is not None and q.events_gap and q.counts.wait == 10
            ),
        )
    finally:
        await stream.aclose()
    assert any("events trimmed" in alert for alert in snapshot.alerts)
    assert not any(e.job_id.startswith("x") for e in snapshot.recent_events)
    row = snapshot.queue(queue_name)
    assert row is not None  # the counts read again after the gap: exact
    assert (row.counts.wait, row.counts.completed, row.counts.failed) == (10, 3, 2)


async def _trim_after_adding(redis: aioredis.Redis, queue_name: str, tag: str) -> None:
    """Five jobs added and their events trimmed at once: a gap for any reader of the stream."""
    keys = QueueKeys(queue_name)
    async with redis.pipeline(transaction=True) as pipe:
        for i in range(5):
            pipe.hset(keys.job(f"{tag}{i}"), mapping={"name": "late", "timestamp": "1"})
            pipe.lpush(keys.wait, f"{tag}{i}")
            pipe.xadd(keys.events, {"event": "waiting", "job_id": f"{tag}{i}"})
        pipe.xtrim(keys.events, maxlen=0, approximate=False)
        await pipe.execute()


def _trimmed(snapshot: DashboardSnapshot) -> bool:
    return any("events trimmed" in alert for alert in snapshot.alerts)


async def test_gap_alert_goes_away_once_the_counts_are_read_again(
    redis_url: str, queue_name: str, redis: aioredis.Redis
) -> None:
    await add_and_finish(redis_url, queue_name)
    monitor = QueueMonitor(
        CorralBackend(), redis_url, queues=[queue_name], poll_interval=0.2, block_ms=100,
        gap_alert_s=1.0,
    )  # fmt: skip
    stream = monitor.snapshots()
    try:
        await wait_for(stream, lambda s: s.queue(queue_name) is not None)

        async def tailing() -> bool:
            return queue_name in monitor.tail.last_ids

        await wait_until(tailing)
        await _trim_after_adding(redis, queue_name, "x")
        shown = await wait_for(
            stream, lambda s: (q := s.queue(queue_name)) is not None and q.events_gap
        )
        assert _trimmed(shown)
        cleared = await wait_for(
            stream, lambda s: (q := s.queue(queue_name)) is not None and not q.events_gap
        )
        assert not _trimmed(cleared)  # resynced: the alert is gone for good
        row = cleared.queue(queue_name)
        assert row is not None and row.counts.wait == 10  # counts read again after the gap
        # a later gap raises the alert again, and it clears again
        await _trim_after_adding(redis, queue_name, "y")
        again = await wait_for(stream, _trimmed)
        assert (q := again.queue(queue_name)) is not None and q.events_gap
        cleared = await wait_for(stream, lambda s: not _trimmed(s))
        row = cleared.queue(queue_name)
        assert row is not None and row.counts.wait == 15 and not row.events_gap
    finally:
        await stream.aclose()


async def test_reconnects_after_the_server_comes_back(fresh_server: FaultServer) -> None:
    await add_and_finish(fresh_server.url, "jobs")
    monitor = QueueMonitor(
        CorralBackend(), fresh_server.url, queues=["jobs"], poll_interval=0.2, backoff_cap=0.5
    )
    stream = monitor.snapshots()
    try:
        before = await wait_for(stream, lambda s: s.queue("jobs") is not None)
        fresh_server.kill()
        down = await wait_for(stream, lambda s: s.mode is Mode.DISCONNECTED)
        assert down.queue("jobs") == before.queue("jobs") or down.queue("jobs") is not None
        assert down.as_of is not None and down.error
        assert "Traceback" not in down.error
        fresh_server.restart()
        async with Queue("jobs", fresh_server.url) as queue:
            await queue.add("send", {})
        back = await wait_for(
            stream,
            lambda s: (
                s.mode is Mode.POLLING
                and (q := s.queue("jobs")) is not None
                and q.counts.total == 1
            ),
        )
    finally:
        await stream.aclose()
    assert back.error is None
    assert back.as_of is not None and back.as_of > down.as_of


async def test_a_real_worker_shows_up_with_its_throughput(redis_url: str, queue_name: str) -> None:
    async def process(job: Job) -> str:
        if job.data["fail"]:
            raise ValueError("asked to fail")
        return "ok"

    async with Queue(queue_name, redis_url) as queue:
        for i in range(20):
            await queue.add("work", {"fail": i % 4 == 0}, attempts=1)
    monitor = QueueMonitor(CorralBackend(), redis_url, queues=[queue_name], poll_interval=0.2)
    stream = monitor.snapshots()
    await wait_for(stream, lambda s: s.queue(queue_name) is not None)  # rates count from here
    worker = Worker(queue_name, process, redis_url, concurrency=4, block_timeout=0.1)
    running = asyncio.create_task(worker.run())
    try:
        snapshot = await wait_for(
            stream,
            lambda s: (
                (q := s.queue(queue_name)) is not None
                and (q.counts.completed, q.counts.failed, q.workers) == (15, 5, 1)
                and sum(s.completed_history) > 0
            ),
        )
    finally:
        await stream.aclose()
        await worker.close()
        await running
    assert any(e.event == "failed" for e in snapshot.recent_events)


@pytest.mark.timeout(180)
async def test_a_burst_of_50000_jobs_is_coalesced(fresh_server: FaultServer) -> None:
    """Each added job sends events and notifications; the screen gets ≤ 10 snapshots a second,
    and the last one has the exact count."""
    fresh_server.config_set("notify-keyspace-events", "KEA")
    total, chunk = 50_000, 1_000
    monitor = QueueMonitor(CorralBackend(), fresh_server.url, queues=["burst"], poll_interval=30)
    stream = monitor.snapshots()
    loop = asyncio.get_running_loop()
    seen: list[tuple[float, int]] = []
    try:
        await wait_for(stream, lambda s: s.mode is Mode.LIVE)

        async def produce() -> None:
            async with Queue("burst", fresh_server.url) as queue:
                for start in range(0, total, chunk):
                    await queue.add_bulk([("tick", {"n": n}) for n in range(start, start + chunk)])

        producer = asyncio.create_task(produce())
        async with asyncio.timeout(120):
            async for snapshot in stream:
                wait = (q.counts.wait if (q := snapshot.queue("burst")) else 0) or 0
                seen.append((loop.time(), wait))
                if wait == total:
                    break
        await producer
    finally:
        await stream.aclose()
    gaps = [b[0] - a[0] for a, b in itertools.pairwise(seen)]
    assert min(gaps) >= 0.095  # never more than ~10 snapshots a second
    assert seen[-1][1] == total
    assert [w for _, w in seen] == sorted(w for _, w in seen)  # counts only ever grow here


async def test_a_tripped_circuit_breaker_is_shown_and_alerted(
    redis_url: str, queue_name: str
) -> None:
    async with Queue(queue_name, redis_url) as queue:
        await queue.set_breaker(Breaker(min_calls=2, cooldown_ms=600_000, probes=1))
        for i in range(4):
            await queue.add("call", {"i": i})
        await finish_jobs(queue, complete=0, fail=2)  # 2 of 2 failed: it trips
        monitor = QueueMonitor(CorralBackend(), redis_url, queues=[queue_name], poll_interval=0.2)
        stream = monitor.snapshots()
        try:
            snapshot = await wait_for(
                stream, lambda s: (q := s.queue(queue_name)) is not None and q.breaker == "open"
            )
            assert any(f"{queue_name}: circuit breaker open" in a for a in snapshot.alerts)
            await queue.reset_breaker()
            snapshot = await wait_for(
                stream, lambda s: (q := s.queue(queue_name)) is not None and q.breaker is None
            )
        finally:
            await stream.aclose()
        assert not any("circuit breaker" in a for a in snapshot.alerts)
