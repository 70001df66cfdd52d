"""Network faults between one client and the server (N1-N6), through the fault proxy, with real
worker processes, the execution ledger and the invariant checker."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from support.invariants import assert_invariants
from support.ledger import check_ledger, read_ledger
from support.proxy import FaultProxy
from support.server import FaultServer
from support.streams import stream_events
from support.workers import WorkerProcess, sweep_stalled, wait_until

from dashboard.corral_backend import CorralBackend
from dashboard.model import DashboardSnapshot, Mode
from dashboard.monitor import QueueMonitor
from engine import Queue

LEDGER_JOB = "support.jobs:ledger_job"


@pytest.fixture
def proxy(fresh_server: FaultServer) -> Iterator[FaultProxy]:
    with FaultProxy(fresh_server.port) as running:
        yield running


def _starts(ledger: Path) -> dict[str, int]:
    out: dict[str, int] = {}
    for line in read_ledger(ledger):
        if line["kind"] == "start":
            job_id = str(line["job_id"])
            out[job_id] = out.get(job_id, 0) + 1
    return out


async def _active(queue: Queue) -> set[str]:
    return set(await queue.get_job_ids("active", 0, -1))


async def _completed(queue: Queue, n: int) -> bool:
    return (await queue.get_totals())[0] >= n


async def _stop(proc: WorkerProcess) -> str:
    """SIGTERM, wait for a clean exit, return what it logged."""
    proc.signal(signal.SIGTERM)
    status = await asyncio.to_thread(proc.wait, 30)
    output = proc.output()
    assert status == 0, output
    return output


@pytest.mark.timeout(90)
async def test_n1_partition_longer_than_the_lock(
    fresh_server: FaultServer,
    proxy: FaultProxy,
    queue_name: str,
    tmp_path: Path,
    procs: list[WorkerProcess],
) -> None:
    """N1: worker A is cut off (blackhole) for longer than its lock while running 5 jobs. B
    recovers and re-runs them; A's late completions are rejected once the partition heals (C4);
    every job has exactly one completion record (C2); A then goes on working (C5)."""
    url, ledger = fresh_server.url, tmp_path / "ledger.jsonl"
    async with Queue(queue_name, url) as queue:
        jobs = await queue.add_bulk([("j", {"sleep": 2.0}) for _ in range(5)])
        ids = {j.id for j in jobs}
        a = WorkerProcess(LEDGER_JOB, queue_name, proxy.url, ledger=ledger, concurrency=5)
        procs.append(a)
        await wait_until(lambda: _has_active(queue, 5), within=20)
        proxy.blackhole()
        cut_at = time.monotonic()
        b = WorkerProcess(LEDGER_JOB, queue_name, url, ledger=ledger, concurrency=5)
        procs.append(b)

        async def all_stalled() -> bool:
            return len(await stream_events(queue.client, queue_name, "stalled")) == 5

        await wait_until(all_stalled, within=20)
        # lock 1 s + 2 sweeps of 0.5 s, plus B's start-up and a loaded machine's slack
        assert time.monotonic() - cut_at < 1.0 + 2 * 0.5 + 8.0
        await wait_until(lambda: _completed(queue, 5), within=20)
        proxy.heal()
        await _stop(b)
        more = await queue.add_bulk([("after", {"sleep": 0}) for _ in range(3)])
        await wait_until(lambda: _completed(queue, 8), within=20)  # only A is left to run them
        log_a = await _stop(a)
        assert log_a.count("result of job") == 5, log_a
        assert await queue.get_totals() == (8, 0)
        starts = _starts(ledger)
        assert {j: starts[j] for j in ids} == dict.fromkeys(ids, 2)
        assert all(starts[j.id] == 1 for j in more)
        for job_id in ids:
            job = await queue.get_job(job_id)
            assert job is not None and job.stalled_count == 1
        await assert_invariants(queue.client, queue_name, completed=8)


async def _has_active(queue: Queue, n: int) -> bool:
    return len(await _active(queue)) == n


@pytest.mark.timeout(90)
async def test_n2_partition_shorter_than_the_lock(
    fresh_server: FaultServer,
    proxy: FaultProxy,
    queue_name: str,
    tmp_path: Path,
    procs: list[WorkerProcess],
) -> None:
    """N2: a 1.5 s partition of a worker whose lock lasts 4 s: no stall, no second run, while
    another worker sweeps for stalled jobs every 0.5 s."""
    url, ledger = fresh_server.url, tmp_path / "ledger.jsonl"
    async with Queue(queue_name, url) as queue:
        jobs = await queue.add_bulk([("j", {"sleep": 3.0}) for _ in range(4)])
        a = WorkerProcess(
            LEDGER_JOB, queue_name, proxy.url, ledger=ledger, concurrency=4, lock_duration=4000
        )
        procs.append(a)
        await wait_until(lambda: _has_active(queue, 4), within=20)
        sweeper = WorkerProcess(LEDGER_JOB, queue_name, url, ledger=ledger, lock_duration=4000)
        procs.append(sweeper)
        proxy.blackhole()
        await asyncio.sleep(1.5)
        proxy.heal()
        await wait_until(lambda: _completed(queue, 4), within=20)
        assert await stream_events(queue.client, queue_name, "stalled") == []
        assert _starts(ledger) == {j.id: 1 for j in jobs}
        assert "discarded" not in await _stop(a)
        await assert_invariants(queue.client, queue_name, completed=4)


# The worker's blocking fetch: BZPOPMIN blocks up to 5 s (the default block timeout) on a
# connection whose socket timeout is 10 s longer, so a silent link is noticed within 15 s.
BLOCK_SOCKET_TIMEOUT = 5.0 + 10.0


@pytest.mark.timeout(90)
async def test_n3_half_open_connection_during_blocking_fetch(
    fresh_server: FaultServer,
    proxy: FaultProxy,
    queue_name: str,
    tmp_path: Path,
    procs: list[WorkerProcess],
) -> None:
    """N3: an idle worker's connections go silent for good (no FIN, no RST) while it blocks
    for jobs. Its blocking fetch times out within its socket timeout, it says so once,
    reconnects (not waiting out the timeout of each other silent connection in turn) and
    starts a job added meanwhile within socket timeout + epsilon of the cut, renewing that
    job's lock (a sweeper would re-run it otherwise)."""
    url, ledger = fresh_server.url, tmp_path / "ledger.jsonl"
    async with Queue(queue_name, url) as queue:
        a = WorkerProcess(LEDGER_JOB, queue_name, proxy.url, ledger=ledger)
        procs.append(a)
        first = await queue.add("first", {})
        await wait_until(lambda: _completed(queue, 1), within=20)
        await asyncio.sleep(0.5)  # idle now, blocked on the marker
        assert proxy.freeze_existing() >= 2
        frozen_at = time.time()  # wall clock, as the ledger's
        job = await queue.add("second", {"sleep": 3.0})
        sweeper = asyncio.create_task(sweep_stalled(queue))  # a stalled check that takes no jobs
        try:
            await wait_until(lambda: _completed(queue, 2), within=40)
        finally:
            sweeper.cancel()
        started = [x["t"] for x in read_ledger(ledger) if x["job_id"] == job.id]
        assert len(started) == 2  # its start and its finish
        took = float(str(started[0])) - frozen_at
        # epsilon: the plan's 1 s of slack plus 1 s for two shared cores
        assert took < BLOCK_SOCKET_TIMEOUT + 2.0, f"job started {took:.1f} s after the cut"
        assert await stream_events(queue.client, queue_name, "stalled") == []
        assert _starts(ledger) == {first.id: 1, job.id: 1}
        log_a = await _stop(a)
        assert log_a.count("lost Redis") == 1 and log_a.count("connection to Redis is back") == 1
        await assert_invariants(queue.client, queue_name, completed=2)


@pytest.mark.timeout(90)
async def test_n4_latency_and_jitter_on_every_link(
    fresh_server: FaultServer,
    proxy: FaultProxy,
    queue_name: str,
    tmp_path: Path,
    procs: list[WorkerProcess],
) -> None:
    """N4: 200 ms +- 100 ms each way on the worker's and the producer's links. The lock must
    outlast a few round trips (a new connection alone costs four), so it is 5 s here: slower,
    but no stall, nothing lost and no second run."""
    url, ledger = fresh_server.url, tmp_path / "ledger.jsonl"
    proxy.latency(200, 100)
    with FaultProxy(fresh_server.port) as producer_link:
        producer_link.latency(200, 100)
        async with (
            Queue(queue_name, producer_link.url) as producer,
            Queue(queue_name, url) as queue,
        ):
            a = WorkerProcess(
                LEDGER_JOB, queue_name, proxy.url, ledger=ledger, concurrency=10,
                lock_duration=5000,
            )  # fmt: skip
            procs.append(a)
            ids = set()
            for _ in range(10):
                jobs = await producer.add_bulk([("j", {"sleep": 1.0}) for _ in range(3)])
                ids |= {j.id for j in jobs}
            await wait_until(lambda: _completed(queue, 30), within=60)
            assert await stream_events(queue.client, queue_name, "stalled") == []
            assert _starts(ledger) == dict.fromkeys(ids, 1)
            proxy.latency(0)
            await _stop(a)
            await assert_invariants(queue.client, queue_name, completed=30)


POOL_ERRORS = ("MaxConnectionsError", "Too many connections", "No connection available")
"""What redis-py says when a connection pool runs out (a leak under reconnects)."""


@pytest.mark.timeout(90)
async def test_n5_reset_storm(
    fresh_server: FaultServer,
    proxy: FaultProxy,
    queue_name: str,
    tmp_path: Path,
    procs: list[WorkerProcess],
) -> None:
    """N5: every connection of a busy worker is reset (RST) every 500 ms for 10 s. Nothing is
    lost, each job has one completion record, a job runs twice only if it was recovered as
    stalled, the worker logs one line per outage, not one per retry, and its connections stay
    bounded: it never holds more than it did before the storm (plus two in passing), and its
    pool never runs out."""
    url, ledger = fresh_server.url, tmp_path / "ledger.jsonl"
    async with Queue(queue_name, url) as queue:
        jobs = await queue.add_bulk([("j", {"sleep": 0.1}) for _ in range(800)])
        a = WorkerProcess(LEDGER_JOB, queue_name, proxy.url, ledger=ledger, concurrency=5)
        procs.append(a)
        sweeper = WorkerProcess(LEDGER_JOB, queue_name, url, ledger=ledger, concurrency=1)
        procs.append(sweeper)
        await wait_until(lambda: _completed(queue, 1), within=20)
        before = await _most_open(proxy, 1.0)
        reset_each_time: list[int] = []
        storm_end = time.monotonic() + 10
        while time.monotonic() < storm_end:
            reset_each_time.append(proxy.reset())
            await asyncio.sleep(0.5)
        assert len(reset_each_time) >= 18 and sum(reset_each_time) >= 40
        assert (await queue.get_totals())[0] < 800  # the storm hit a busy worker
        await wait_until(lambda: _completed(queue, 800), within=60)
        after = await _most_open(proxy, 1.0)
        assert max(reset_each_time) <= before + 2, (before, reset_each_time)
        assert after <= before + 2, (before, after)
        # every connection the worker opened was reset by the storm or is still open (give or
        # take a few closed on the way): no reconnect churn
        assert proxy.accepted <= sum(reset_each_time) + after + 10, proxy.accepted
        assert await queue.get_totals() == (800, 0)
        recoveries = [e["job_id"] for e in await stream_events(queue.client, queue_name, "stalled")]
        stalled = set(recoveries)
        starts = _starts(ledger)
        assert set(starts) == {j.id for j in jobs}
        assert {j for j, n in starts.items() if n > 1} <= stalled
        ids, done = {j.id for j in jobs}, set(await queue.get_job_ids("completed", 0, -1))
        check = check_ledger(ledger, ids, done, recovered=recoveries)
        assert not check.lost and not check.duplicated and not check.unexpected
        log_a = await _stop(a)
        assert len(log_a.splitlines()) < 100, log_a
        assert not [line for line in log_a.splitlines() if any(e in line for e in POOL_ERRORS)]
        await assert_invariants(queue.client, queue_name, completed=800)


async def _most_open(proxy: FaultProxy, seconds: float) -> int:
    """The most connections the proxy carried at once, sampled every 20 ms for ``seconds``."""
    most = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        most = max(most, proxy.open_connections)
        await asyncio.sleep(0.02)
    return most


@pytest.mark.timeout(60)
async def test_n6_dashboard_cut_off_keeps_its_data_and_comes_back(
    fresh_server: FaultServer, proxy: FaultProxy, queue_name: str
) -> None:
    """N6: the dashboard's link is partitioned: it says DISCONNECTED and keeps the last counts;
    after the partition it reconnects by itself and shows what changed meanwhile."""
    url = fresh_server.url
    monitor = QueueMonitor(
        CorralBackend(), proxy.url, queues=[queue_name], poll_interval=0.2, block_ms=200
    )
    stream = monitor.snapshots()

    async def until(check: Callable[[DashboardSnapshot], bool]) -> DashboardSnapshot:
        async with asyncio.timeout(30):
            async for snapshot in stream:
                if check(snapshot):
                    return snapshot
        raise AssertionError("the monitor stopped")

    def waiting(n: int) -> Callable[[DashboardSnapshot], bool]:
        def check(s: DashboardSnapshot) -> bool:
            q = s.queue(queue_name)
            return s.mode is Mode.POLLING and q is not None and q.counts.wait == n

        return check

    try:
        async with Queue(queue_name, url) as queue:
            await queue.add_bulk([("j", {}) for _ in range(3)])
            await until(waiting(3))
            proxy.blackhole()
            cut_at = time.monotonic()
            await queue.add_bulk([("j", {}) for _ in range(4)])
            cut = await until(lambda s: s.mode is Mode.DISCONNECTED)
            assert time.monotonic() - cut_at < 5.0 + 3.0  # its socket timeout (5 s) + slack
            kept = cut.queue(queue_name)
            assert kept is not None and kept.counts.wait == 3  # last known data, not zeroes
            assert cut.error is not None
            proxy.heal()
            back = await until(waiting(7))
            assert back.error is None
    finally:
        await stream.aclose()
