"""Workers and producers ride out a server that dies and comes back (C5 liveness); while it
is away, a worker's loops wait for its one probe, which saves held locks and never holds up a
shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import socket
import time
from typing import Any

import pytest
from support.invariants import assert_invariants
from support.proxy import FaultProxy
from support.server import FaultServer
from support.streams import stream_events
from support.workers import running_worker, sweep_stalled, wait_until

from engine import Job, JobState, Queue, Worker, reachability


@pytest.mark.timeout(60)
async def test_worker_resumes_after_the_server_is_killed_and_restarted(
    fresh_server: FaultServer, queue_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    url = fresh_server.url
    done: list[str] = []

    async def process(job: Job) -> Any:
        done.append(job.id)

    caplog.set_level(logging.INFO, logger="corral.worker")
    async with running_worker(queue_name, process, url, stalled_interval=200):
        async with Queue(queue_name, url) as queue:
            first = await queue.add("before", {}, job_id="before-restart")

            async def first_completed() -> bool:
                return await queue.get_job_state(first.id) is JobState.COMPLETED

            await wait_until(first_completed)  # the worker is idle, blocked on the marker
        fresh_server.kill()
        await asyncio.sleep(3.0)  # the worker keeps trying, quietly, with backoff
        fresh_server.restart()
        async with Queue(queue_name, url) as queue:
            after = await queue.add("after", {}, job_id="after-restart")

            async def after_completed() -> bool:
                return await queue.get_job_state(after.id) is JobState.COMPLETED

            # the processor runs before its completion is recorded: wait for the record
            await wait_until(after_completed, within=25)
            assert done.count(after.id) == 1
            await assert_invariants(queue.client, queue_name, completed=1)
    lost = [r for r in caplog.records if "lost Redis" in r.getMessage()]
    back = [r for r in caplog.records if "is back" in r.getMessage()]
    # one line per change of state (lost, back), never one per retry during the outage
    assert 1 <= len(lost) <= 2
    assert len(back) == len(lost)


async def test_scripts_are_reloaded_after_script_flush(redis_url: str, queue_name: str) -> None:
    """R7 for a producer: after SCRIPT FLUSH the next call reloads its script without an
    error."""
    async with Queue(queue_name, redis_url) as queue:
        await queue.add("a", {})
        await queue.client.script_flush()
        job = await queue.add("b", {})
        assert job.state is JobState.WAIT
        assert await queue.pause() is True
        await assert_invariants(queue.client, queue_name, paused=2)


async def test_a_running_worker_reloads_its_scripts_after_script_flush(
    redis_url: str, queue_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    """R7 for a worker: SCRIPT FLUSH every 100 ms while a running worker takes, renews (1 s
    locks, jobs of 0.6 s) and completes jobs, and once while it is idle on the marker. Every
    call reloads its script once and goes on: all jobs complete, each ran once, nothing
    stalled, and the worker logged no error or warning."""
    started: list[str] = []

    async def process(job: Job) -> Any:
        started.append(job.id)
        await asyncio.sleep(float(job.data["sleep"]))
        return job.id

    caplog.set_level(logging.INFO, logger="corral")
    async with (
        Queue(queue_name, redis_url) as queue,
        running_worker(
            queue_name, process, redis_url, concurrency=5, lock_duration=1000, stalled_interval=200
        ),
    ):
        first = await queue.add_bulk([("busy", {"sleep": 0.6}) for _ in range(25)])

        async def flush_often() -> None:
            while True:
                await queue.client.script_flush()
                await asyncio.sleep(0.1)

        flusher = asyncio.create_task(flush_often())
        try:
            await wait_until(lambda: _completed(queue, 25), within=30)
        finally:
            flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await flusher
        await asyncio.sleep(0.3)  # idle, blocked on the marker
        await queue.client.script_flush()
        then = await queue.add_bulk([("after", {"sleep": 0}) for _ in range(5)])
        await wait_until(lambda: _completed(queue, 30), within=10)
        ids = [j.id for j in [*first, *then]]
        assert sorted(started) == sorted(ids)  # each ran once
        for job_id in ids:
            done = await queue.get_job(job_id)
            assert done is not None and done.returnvalue == job_id and done.stalled_count == 0
        assert await stream_events(queue.client, queue_name, "stalled") == []
        await assert_invariants(queue.client, queue_name, completed=30)
    complaints = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert complaints == []


async def _completed(queue: Queue, n: int) -> bool:
    return (await queue.get_totals())[0] >= n


@pytest.mark.timeout(30)
async def test_a_worker_waiting_for_a_server_says_so_at_most_once_per_interval(
    queue_name: str, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """R1/R11: while nothing listens, the worker retries with growing pauses and repeats its
    "not reachable" line at most once per ``STILL_DOWN_EVERY`` (30 s; 0.5 s here)."""
    monkeypatch.setattr(reachability, "STILL_DOWN_EVERY", 0.5)
    with socket.socket() as probe:  # a loopback port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    caplog.set_level(logging.WARNING, logger="corral.worker")

    async def process(job: Job) -> Any:
        return None

    worker = Worker(queue_name, process, f"redis://127.0.0.1:{port}")
    running = asyncio.create_task(worker.run())
    await asyncio.sleep(2.5)
    await worker.close()
    await running
    lines = [r for r in caplog.records if "Redis not reachable" in r.getMessage()]
    # attempts at about 0, 0.1, 0.3, 0.7, 1.5 s: a line at the first and then one per 0.5 s
    assert 2 <= len(lines) <= 1 + 2.5 / 0.5
    gaps = [b.created - a.created for a, b in itertools.pairwise(lines)]
    assert all(gap >= 0.5 for gap in gaps), gaps


def _free_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _cut(proxy: FaultProxy) -> None:
    """The worker's server goes away: its connections are reset, and the new ones it makes are
    reset at once (the proxy links them to a port nothing listens on), while the server itself
    keeps running with its data."""
    proxy.retarget(_free_port())
    proxy.reset()


HELD_LOCK_MS = 12_000
"""Renewed every 6 s; while a held lock may still be alive, the probe tries every second."""
BACK_AFTER = 9.5
"""Seconds of the outage in the lock test. Its probe, left to its own pauses (0.1 s doubling,
counted from when a loop first failed, 0 to 2 s into the outage), would try at 6.3 to 8.3 s
and next at 12.7 s or later: after the held lock expired, 12 s in."""


@pytest.mark.timeout(60)
async def test_a_held_lock_is_renewed_as_soon_as_the_server_is_back(
    fresh_server: FaultServer, queue_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    """N2 for an outage the worker notices (connections reset, new ones refused), right after
    the lock of its job was renewed: while that lock may still be alive, the worker's probe
    tries every second, so once the server is back (9.5 s later) renewal resumes within about a
    second, long before the probe's own pauses would have ended and 2.5 s before the lock would
    have lapsed. The lock never lapses, nothing stalls (a sweeper checks all along), the job
    runs once, and the worker says once that it lost the server and once that it is back."""
    caplog.set_level(logging.INFO, logger="corral.worker")
    started: list[str] = []
    release = asyncio.Event()

    async def process(job: Job) -> Any:
        started.append(job.id)
        await release.wait()
        return "done"

    with FaultProxy(fresh_server.port) as proxy:
        async with (
            Queue(queue_name, fresh_server.url) as queue,
            running_worker(
                queue_name,
                process,
                proxy.url,
                lock_duration=HELD_LOCK_MS,
                stalled_interval=500,
            ),
        ):
            job = await queue.add("held", {})
            lock = queue.keys.lock(job.id)

            async def renewed_just_now() -> bool:
                return int(await queue.client.pttl(lock)) >= HELD_LOCK_MS - 200

            await wait_until(renewed_just_now, within=20, interval=0.01)  # taken, or renewed
            _cut(proxy)
            cut_at = time.monotonic()
            sweeper = asyncio.create_task(sweep_stalled(queue))
            try:
                lowest = HELD_LOCK_MS
                while time.monotonic() - cut_at < BACK_AFTER:
                    lowest = min(lowest, int(await queue.client.pttl(lock)))
                    await asyncio.sleep(0.05)
                proxy.retarget(fresh_server.port)
                back_at = time.monotonic()

                async def renewed_again() -> bool:
                    return int(await queue.client.pttl(lock)) > HELD_LOCK_MS / 2

                await wait_until(renewed_again, within=HELD_LOCK_MS / 1000, interval=0.02)
                renewed_after = time.monotonic() - back_at
            finally:
                sweeper.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await sweeper
            release.set()

            async def completed() -> bool:
                return await queue.get_job_state(job.id) is JobState.COMPLETED

            await wait_until(completed, within=10)
            print(f"\nlock renewed {renewed_after:.2f} s after the server was back")
            assert lowest > 0, "the lock lapsed during the outage"
            assert renewed_after < 1.0 + 1.0  # one probe period, plus slack for two cores
            assert started == [job.id]
            assert await stream_events(queue.client, queue_name, "stalled") == []
            await assert_invariants(queue.client, queue_name, completed=1)
    said = [r.getMessage() for r in caplog.records]
    assert sum("lost Redis" in line for line in said) == 1, said
    assert sum("connection to Redis is back" in line for line in said) == 1, said


@pytest.mark.timeout(60)
async def test_closing_while_the_server_is_unreachable_takes_the_grace_period_only(
    fresh_server: FaultServer, queue_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    """S4 in-process: the server goes away while the worker runs a long job and another
    finishes (its completion then waits for the server). ``close()`` returns within the grace
    period plus slack: no loop waits for the server to come back, and the worker makes no call
    that would wait out redis-py's retries (it knows the server is unreachable): each job is
    left to the stalled check, with one line each."""
    caplog.set_level(logging.WARNING, logger="corral.worker")

    async def process(job: Job) -> Any:
        await asyncio.sleep(float(job.data["sleep"]))

    with FaultProxy(fresh_server.port) as proxy:
        async with Queue(queue_name, fresh_server.url) as queue:
            jobs = await queue.add_bulk([("long", {"sleep": 30}), ("short", {"sleep": 1.0})])
            worker = Worker(
                queue_name,
                process,
                proxy.url,
                concurrency=2,
                lock_duration=1000,
                stalled_interval=200,
                block_timeout=1.0,
                shutdown_grace=1.0,
            )
            running = asyncio.create_task(worker.run())

            async def both_active() -> bool:
                return len(await queue.get_job_ids("active", 0, -1)) == 2

            await wait_until(both_active, within=20)
            _cut(proxy)
            await asyncio.sleep(2.5)  # "short" has finished: its completion waits
            began = time.monotonic()
            await asyncio.wait_for(worker.close(), 10)
            took = time.monotonic() - began
            await asyncio.wait_for(running, 1)
            left = [r.getMessage() for r in caplog.records if "left to the stalled" in r.msg]
            print(f"\nclosed {took:.2f} s after close() while the server was unreachable")
            assert took < 1.0 + 1.0, took
            assert sorted(line.split("job ")[1].split()[0] for line in left) == sorted(
                j.id for j in jobs
            ), left
