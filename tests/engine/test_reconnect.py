"""Workers and producers ride out a server that dies and comes back (C5 liveness)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import socket
from typing import Any

import pytest
from support.invariants import assert_invariants
from support.server import FaultServer
from support.streams import stream_events
from support.workers import running_worker, wait_until

from engine import Job, JobState, Queue, Worker
from engine import worker as worker_module


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
    monkeypatch.setattr(worker_module, "STILL_DOWN_EVERY", 0.5)
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
