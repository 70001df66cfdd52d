"""The BullMQ backend live, against Node BullMQ: discovery under custom and hash-tag prefixes,
the events stream tailed with gap detection, throughput from it, a SIGKILLed worker's jobs
shown stalled until BullMQ's own stall sweep recovers them, and live mode hearing only the
queues' ``meta`` keys yet showing a pause or resume at once (v5 and v6). First, without the
network: how the fixtures that install BullMQ with npm skip, or fail under
``CORRAL_REQUIRE_NODE=1``."""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from support.bullmq_fixtures import REQUIRE_NODE, bullmq_or_skip, unavailable
from support.bullmq_node import PACKAGES, HoldingWorker, NodeDriver
from support.workers import wait_until

from dashboard.bullmq.backend import BullMQBackend
from dashboard.event_tail import EventTail
from dashboard.model import DashboardSnapshot, Mode, QueueSnapshot
from dashboard.monitor import QueueMonitor

pytestmark = pytest.mark.timeout(120)


# -- installing BullMQ: skip or fail, never hang ------------------------------------------------


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def silent_registry() -> Iterator[str]:
    """A loopback port that takes connections and never answers (no accept, no reply)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/"


@pytest.fixture
def npm_here() -> None:
    """These tests run npm itself: without it they skip (or fail) as the Node tests do."""
    if shutil.which("npm") is None or shutil.which("node") is None:
        unavailable("node and npm are needed to check how npm's failures are reported")


@pytest.mark.usefixtures("npm_here")
def test_an_unreachable_registry_skips_with_npms_error_or_fails_when_node_is_required(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry = f"http://127.0.0.1:{_closed_port()}/"
    cache = tmp_path / "cache"  # empty: --prefer-offline finds nothing there
    monkeypatch.delenv(REQUIRE_NODE, raising=False)
    started = time.monotonic()
    with pytest.raises(pytest.skip.Exception) as skipped:
        bullmq_or_skip("6", root=tmp_path, registry=registry, cache=cache)
    reason = str(skipped.value)
    assert reason.startswith("npm could not install bullmq@6.7.0: "), reason
    assert "ECONNREFUSED" in reason and f"{registry}bullmq" in reason
    assert "\n" not in reason and "    at " not in reason  # npm's last lines, not its stack
    monkeypatch.setenv(REQUIRE_NODE, "1")
    with pytest.raises(pytest.fail.Exception) as failed:
        bullmq_or_skip("5", root=tmp_path, registry=registry, cache=cache)
    assert str(failed.value).startswith("npm could not install bullmq@5.81.5: ")
    assert str(failed.value).endswith(f"({REQUIRE_NODE}=1 makes this a failure)")
    assert time.monotonic() - started < 15


@pytest.mark.usefixtures("npm_here")
def test_npm_that_gets_no_answer_is_stopped_at_its_timeout(
    tmp_path: Path, silent_registry: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(REQUIRE_NODE, raising=False)
    started = time.monotonic()
    with pytest.raises(pytest.skip.Exception) as skipped:
        bullmq_or_skip(
            "6", root=tmp_path, registry=silent_registry, cache=tmp_path / "cache", timeout=2
        )
    assert str(skipped.value).startswith("npm could not install bullmq@6.7.0: no result within 2 s")
    assert time.monotonic() - started < 10


@pytest.mark.parametrize("missing", ["node", "npm"])
def test_without_node_or_npm_the_tests_skip_or_fail_when_node_is_required(
    missing: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "bin"
    path.mkdir()
    node = shutil.which("node")
    if missing == "npm" and node is not None:
        (path / "node").symlink_to(node)  # node alone
    monkeypatch.setenv("PATH", str(path))
    monkeypatch.delenv(REQUIRE_NODE, raising=False)
    with pytest.raises(pytest.skip.Exception, match=f"{missing} is not installed"):
        bullmq_or_skip("6", root=tmp_path)
    monkeypatch.setenv(REQUIRE_NODE, "1")
    with pytest.raises(pytest.fail.Exception, match=r"is not installed.*makes this a failure"):
        bullmq_or_skip("6", root=tmp_path)


@pytest.mark.usefixtures("npm_here")
def test_an_installed_bullmq_is_reused_without_npm(tmp_path: Path) -> None:
    for name, version in PACKAGES["6"].items():
        package = tmp_path / "bullmq6" / "node_modules" / name
        package.mkdir(parents=True)
        (package / "package.json").write_text(json.dumps({"name": name, "version": version}))
    closed = f"http://127.0.0.1:{_closed_port()}/"  # npm would fail, were it run
    found = bullmq_or_skip("6", root=tmp_path, registry=closed)
    assert found == tmp_path / "bullmq6" / "node_modules"


# -- the backend live, against Node BullMQ -----------------------------------------------------


async def test_discovery_under_custom_and_hash_tag_prefixes(
    bullmq6_modules: Path, redis_url: str, redis: aioredis.Redis, queue_name: str
) -> None:
    tag = "{t" + uuid.uuid4().hex[:8] + "}"
    custom = "app-" + uuid.uuid4().hex[:8]
    drivers = [
        await NodeDriver(bullmq6_modules, redis_url, prefix=prefix).start()
        for prefix in (tag, custom)
    ]
    try:
        for driver in drivers:
            await driver.call("add", queue=queue_name, name="a")
            await driver.call("add", queue=f"{queue_name}-2", name="b", opts={"delay": 60_000})
        for driver in drivers:
            backend = BullMQBackend(driver.prefix)
            assert await backend.discover_queues(redis) == [queue_name, f"{queue_name}-2"]
            readings = await backend.read_counts(redis, [queue_name, f"{queue_name}-2"])
            assert readings[queue_name].counts.wait == 1
            assert readings[f"{queue_name}-2"].counts.delayed == 1
            assert await redis.exists(f"{driver.prefix}:{queue_name}:wait")
        assert queue_name not in await BullMQBackend("bull").discover_queues(redis)
    finally:
        for driver in drivers:
            await driver.close()


async def test_events_tailed_counted_and_gaps_flagged(
    node6: NodeDriver, redis: aioredis.Redis, queue_name: str
) -> None:
    backend = BullMQBackend()
    await node6.call("add", queue=queue_name, name="first")
    tail = EventTail(backend, block_ms=200)
    await tail.read(redis, [queue_name])  # starts after the entries already there
    await node6.call("worker", queue=queue_name, concurrency=2)
    for _ in range(3):
        await node6.call("add", queue=queue_name, name="ok")
    await node6.call("add", queue=queue_name, name="bad", data={"mode": "fail"})
    seen: list[str] = []

    async def counted() -> bool:
        seen.extend(event.event for event in (await tail.read(redis, [queue_name])).events)
        reading = (await backend.read_counts(redis, [queue_name]))[queue_name]
        return (reading.completed_total, reading.failed_total) == (4, 1)

    await wait_until(counted, within=30)
    assert {"added", "waiting", "active", "completed", "failed"} <= set(seen)

    # entries trimmed before they were read (as maxLenEvents does on a busy queue): a gap
    await node6.call("add", queue=queue_name, name="unseen", opts={"delay": 60_000})
    await redis.xtrim(backend.events_key(queue_name), maxlen=0)
    await node6.call("add", queue=queue_name, name="after", opts={"delay": 60_000})
    found = await tail.read(redis, [queue_name])
    assert found.gaps == (queue_name,)


async def test_a_killed_workers_jobs_show_stalled_until_bullmq_recovers_them(
    node: NodeDriver, bullmq_modules: Path, redis_url: str, redis: aioredis.Redis, queue_name: str
) -> None:
    backend = BullMQBackend()
    for i in range(2):
        await node.call("add", queue=queue_name, name="long", data={"i": i})
    holder = await HoldingWorker(
        bullmq_modules,
        redis_url,
        queue_name,
        concurrency=2,
        lock_duration=1_000,
        stalled_interval=500,
    ).start()
    try:
        taken = await holder.wait_taken(2)
        active, total = await backend.read_active(redis, queue_name, 0, 10)
        assert total == 2 and {job.id for job in active} == set(taken)
        assert all(job.lock_held and job.worker == "holder" for job in active)
        assert all(job.active_since_ms > 0 for job in active)
    finally:
        await holder.kill()

    async def locks_gone() -> bool:
        jobs, _ = await backend.read_active(redis, queue_name, 0, 10)
        return len(jobs) == 2 and not any(job.lock_held for job in jobs)

    await wait_until(locks_gone, within=15)

    monitor = QueueMonitor(backend, redis_url, queues=[queue_name], poll_interval=0.2)
    stream = monitor.snapshots()

    def stalled(snapshot: DashboardSnapshot) -> set[str]:
        return {e.job_id for e in snapshot.stalled_events if e.queue == queue_name}

    try:
        async with asyncio.timeout(30):
            async for snapshot in stream:
                if snapshot.queue(queue_name) is not None:
                    break
            # a live worker's stall sweep moves them back to wait, and then runs them
            await node.call("worker", queue=queue_name, stalledInterval=500, lockDuration=1_000)
            async for snapshot in stream:
                queue = snapshot.queue(queue_name)
                if stalled(snapshot) == set(taken) and queue and queue.counts.completed == 2:
                    break
    finally:
        await stream.aclose()
    assert any(f"{queue_name}: 2 stalled" in alert for alert in snapshot.alerts)
    assert (await backend.read_active(redis, queue_name, 0, 10))[1] == 0


async def test_per_minute_metrics_equal_nodes(
    node: NodeDriver, redis: aioredis.Redis, queue_name: str
) -> None:
    backend = BullMQBackend()
    assert await backend.read_metrics(redis, queue_name, "completed") == (None, [])
    await node.call("worker", queue=queue_name, concurrency=4, metrics=60)
    for i in range(6):
        await node.call("add", queue=queue_name, name="m", data={"mode": "fail" if i < 2 else "ok"})

    async def finished() -> bool:
        counts = await node.call("counts", queue=queue_name)
        return bool(counts["completed"] == 4 and counts["failed"] == 2)

    await wait_until(finished, within=30)
    for kind, total in (("completed", 4), ("failed", 2)):
        count, points = await backend.read_metrics(redis, queue_name, kind)
        theirs = await node.call("metrics", queue=queue_name, kind=kind)
        assert count == int(theirs["count"]) == total
        assert points == [int(point) for point in theirs["data"]]
    with pytest.raises(ValueError, match="metrics kind 'done' is invalid"):
        await backend.read_metrics(redis, queue_name, "done")


class ChannelsHeard(BullMQBackend):
    """The BullMQ backend, noting every keyspace channel the monitor hands it."""

    def __init__(self) -> None:
        super().__init__()
        self.channels: list[str] = []

    def queue_of_channel(self, channel: str) -> str | None:
        self.channels.append(channel)
        return super().queue_of_channel(channel)


PROMPT_S = 2.0
"""A pause or resume by Node reaches a snapshot within this (polling is 30 s apart here)."""


async def test_live_mode_hears_only_meta_and_shows_a_node_pause_and_resume_at_once(
    bullmq_modules: Path, fresh_server: Any, queue_name: str
) -> None:
    fresh_server.config_set("notify-keyspace-events", "KEA")
    url = fresh_server.url
    backend = ChannelsHeard()
    meta = f"__keyspace@0__:bull:{queue_name}:meta"
    node = await NodeDriver(bullmq_modules, url).start()
    monitor = QueueMonitor(backend, url, queues=[queue_name], poll_interval=30)
    stream = monitor.snapshots()

    async def snapshot_where(check: Callable[[QueueSnapshot], bool]) -> QueueSnapshot:
        async for snapshot in stream:
            queue = snapshot.queue(queue_name)
            if snapshot.mode is Mode.LIVE and queue is not None and check(queue):
                return queue
        raise AssertionError("the monitor stopped")

    async def timed(op: str, check: Callable[[QueueSnapshot], bool]) -> float:
        heard = len(backend.channels)
        started = time.monotonic()
        await node.call(op, queue=queue_name)
        await snapshot_where(check)
        assert meta in backend.channels[heard:]  # the hint came by the meta key too
        return time.monotonic() - started

    try:
        async with asyncio.timeout(60):
            await node.call("add", queue=queue_name, name="first")
            await snapshot_where(lambda q: q.counts.wait == 1)
            worker = await node.call("worker", queue=queue_name, concurrency=4)
            for i in range(20):
                await node.call("add", queue=queue_name, name="run", data={"i": i})
            await snapshot_where(lambda q: q.counts.completed == 21)
            await node.call("closeWorker", handle=worker)
            for i in range(3):
                await node.call("add", queue=queue_name, name="held", data={"i": i})
            await snapshot_where(lambda q: q.counts.wait == 3)
            # v5 renames wait to paused; v6 leaves the jobs in wait
            paused_s = await timed(
                "pause", lambda q: q.paused and q.counts.wait + q.counts.paused == 3
            )
            resumed_s = await timed("resume", lambda q: not q.paused and q.counts.wait == 3)
    finally:
        await stream.aclose()
        await node.close()
    # the jobs' own keys (wait, active, locks, job hashes, the stream...) sent nothing
    assert backend.channels and set(backend.channels) == {meta}
    assert paused_s < PROMPT_S and resumed_s < PROMPT_S, (paused_s, resumed_s)
