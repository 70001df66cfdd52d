"""The server dies, restarts, drops clients or is absent (R1, R2, R10, R11, S4), with real
worker processes, the execution ledger and the invariant checker."""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import time
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from support.invariants import assert_invariants
from support.ledger import read_ledger
from support.server import FaultServer, ServerFactory
from support.streams import stream_events
from support.workers import WorkerProcess, wait_until

from engine import JobState, Queue

LEDGER_JOB = "support.jobs:ledger_job"


def _starts(ledger: Path) -> dict[str, int]:
    out: dict[str, int] = {}
    for line in read_ledger(ledger):
        if line["kind"] == "start":
            out[str(line["job_id"])] = out.get(str(line["job_id"]), 0) + 1
    return out


async def _completed(queue: Queue, n: int) -> bool:
    try:
        return (await queue.get_totals())[0] >= n
    except (OSError, ConnectionError, aioredis.ConnectionError):
        return False


@pytest.mark.timeout(90)
async def test_r1_server_without_persistence_killed_and_restarted_empty(
    fresh_server: FaultServer, queue_name: str, tmp_path: Path, procs: list[WorkerProcess]
) -> None:
    """R1: the server dies mid-job and comes back empty. The worker stays up, logs the outage
    once (not once per retry), says once that the dataset was reset, drops the vanished job's
    result with a clear message instead of crashing, and runs jobs added after the restart
    within 2 s + slack."""
    url, ledger = fresh_server.url, tmp_path / "ledger.jsonl"
    async with Queue(queue_name, url) as queue:
        job = await queue.add("in-flight", {"sleep": 2.0})
        worker = WorkerProcess(LEDGER_JOB, queue_name, url, ledger=ledger)
        procs.append(worker)
        await wait_until(lambda: _state_is(queue, job.id, JobState.ACTIVE), within=20)
    fresh_server.kill()
    await asyncio.sleep(3.0)  # the job finishes meanwhile; its completion cannot be recorded
    fresh_server.restart()
    async with Queue(queue_name, url) as queue:
        after = await queue.add("after", {})
        added_at = time.monotonic()
        await wait_until(lambda: _completed(queue, 1), within=25)
        assert time.monotonic() - added_at < 2.0 + 5.0  # reconnect backoff is capped
        worker.signal(signal.SIGTERM)
        assert await asyncio.to_thread(worker.wait, 30) == 0
        log = worker.output()
        assert "Traceback" not in log
        # the empty server hands out id 1 again: the stale result is fenced off all the same
        assert f"result of job {job.id} discarded" in log, log
        assert log.count("lock renewal failed") <= 1, log
        assert log.count("cannot record job") <= 1, log
        assert log.count("Redis dataset was reset") == 1, log
        assert f"without the data of queue {queue_name!r}" in log
        assert len([x for x in read_ledger(ledger) if x["kind"] == "start"]) == 2
        done = await queue.get_job(after.id)
        assert done is not None and done.returnvalue == {}  # its own result, not the old one's
        await assert_invariants(queue.client, queue_name, completed=1)


async def _state_is(queue: Queue, job_id: str, state: JobState) -> bool:
    return await queue.get_job_state(job_id) is state


@pytest.mark.timeout(90)
@pytest.mark.parametrize(
    ("persistence", "window"), [("aof-everysec", 2.0), ("aof-always", 0.0)], ids=["R2", "R3"]
)
async def test_r2_killed_server_with_aof_keeps_acknowledged_adds(
    server_factory: ServerFactory,
    queue_name: str,
    tmp_path: Path,
    procs: list[WorkerProcess],
    persistence: str,
    window: float,
) -> None:
    """R2 (AOF everysec): every add acknowledged more than 2 s before the crash survives it.
    R3 (AOF always): every acknowledged add survives. Either way, jobs that were active come
    back through the stalled check and every surviving job completes."""
    server = server_factory(persistence=persistence)
    url, ledger = server.url, tmp_path / "ledger.jsonl"
    acked: list[tuple[str, float]] = []
    worker = WorkerProcess(LEDGER_JOB, queue_name, url, ledger=ledger, concurrency=4)
    procs.append(worker)
    async with Queue(queue_name, url) as queue:
        started = time.monotonic()
        while time.monotonic() - started < 3.0:
            job = await queue.add("j", {"sleep": 0.3})
            acked.append((job.id, time.monotonic()))
            await asyncio.sleep(0.01)
        server.kill()
        killed_at = time.monotonic()
    server.start()
    must_survive = {job_id for job_id, at in acked if at <= killed_at - window}
    async with Queue(queue_name, url) as queue:
        survived = {
            job_id for job_id, _ in acked if await queue.client.exists(f"{queue.keys.job(job_id)}")
        }
        assert must_survive <= survived

        async def all_done() -> bool:
            return set(await queue.get_job_ids("completed", 0, -1)) >= survived

        await wait_until(all_done, within=40)
        assert must_survive <= set(_starts(ledger))
        await assert_invariants(queue.client, queue_name, completed=len(survived))


def _answers_loading(port: int) -> bool:
    """Whether the server on ``port`` answers PING with LOADING right now."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"-LOADING")
    except OSError:
        return False


@pytest.mark.timeout(90)
async def test_r4_server_loading_a_large_aof(
    server_factory: ServerFactory, queue_name: str, tmp_path: Path, procs: list[WorkerProcess]
) -> None:
    """R4: the server restarts and spends seconds loading its AOF (answering LOADING). The
    worker treats that as transient: it waits, fails no job, and runs them once loaded."""
    server = server_factory(persistence="aof-always")
    url, ledger = server.url, tmp_path / "ledger.jsonl"
    filler = server.client()
    try:
        pipe = filler.pipeline(transaction=False)
        for i in range(20_000):
            pipe.set(f"filler:{i}", "x" * 100)
        pipe.execute()
    finally:
        filler.close()
    async with Queue(queue_name, url) as queue:
        jobs = await queue.add_bulk([("j", {}, {"delay": 2500}) for _ in range(20)])
    worker = WorkerProcess(LEDGER_JOB, queue_name, url, ledger=ledger, concurrency=5)
    procs.append(worker)
    await asyncio.sleep(1.0)
    server.kill()
    # 100 us per key: about 2 s of LOADING, with events processed so clients get the reply
    server.extra_args = (
        "--key-load-delay", "100", "--loading-process-events-interval-bytes", "1024",
    )  # fmt: skip
    restarting = asyncio.ensure_future(asyncio.to_thread(server.restart, 60))
    saw_loading = False
    while not restarting.done():
        saw_loading = saw_loading or await asyncio.to_thread(_answers_loading, server.port)
        await asyncio.sleep(0.05)
    await restarting
    assert saw_loading
    async with Queue(queue_name, url) as queue:
        await wait_until(lambda: _completed(queue, 20), within=30)
        assert await queue.get_totals() == (20, 0)
        worker.signal(signal.SIGTERM)
        assert await asyncio.to_thread(worker.wait, 30) == 0
        assert "Traceback" not in worker.output()
        assert _starts(ledger) == {j.id: 1 for j in jobs}
        await assert_invariants(queue.client, queue_name, completed=20)


@pytest.mark.timeout(90)
async def test_r10_client_kill_bursts(
    fresh_server: FaultServer, queue_name: str, tmp_path: Path, procs: list[WorkerProcess]
) -> None:
    """R10: CLIENT KILL TYPE normal ten times in 3 s while a worker is busy: it recovers every
    time, and no job runs twice."""
    url, ledger = fresh_server.url, tmp_path / "ledger.jsonl"
    async with Queue(queue_name, url) as queue:
        jobs = await queue.add_bulk([("j", {"sleep": 0.1}) for _ in range(80)])
        worker = WorkerProcess(
            LEDGER_JOB, queue_name, url, ledger=ledger, concurrency=4, lock_duration=3000
        )
        procs.append(worker)
        await wait_until(lambda: _completed(queue, 1), within=20)
        killed = 0
        for _ in range(10):
            killed += fresh_server.drop_clients()
            await asyncio.sleep(0.3)
        assert killed >= 10
        await wait_until(lambda: _completed(queue, 80), within=40)
        assert await queue.get_totals() == (80, 0)
        assert _starts(ledger) == {j.id: 1 for j in jobs}
        assert await stream_events(queue.client, queue_name, "stalled") == []
        await assert_invariants(queue.client, queue_name, completed=80)


@pytest.mark.timeout(60)
async def test_r11_server_absent_when_worker_and_producer_start(
    server_factory: ServerFactory, queue_name: str, tmp_path: Path, procs: list[WorkerProcess]
) -> None:
    """R11: the worker starts before the server: it waits and retries quietly, then works. A
    producer with no server fails within seconds with a connection error (no hang)."""
    server = FaultServer()  # not started: its port is free
    url, ledger = server.url, tmp_path / "ledger.jsonl"
    worker = WorkerProcess(LEDGER_JOB, queue_name, url, ledger=ledger)
    procs.append(worker)
    async with Queue(queue_name, url) as queue:
        started = time.monotonic()
        with pytest.raises(aioredis.ConnectionError):
            await queue.add("too-early", {})
        assert time.monotonic() - started < 10
    await asyncio.sleep(2.0)
    server.start()
    try:
        async with Queue(queue_name, url) as queue:
            job = await queue.add("j", {})
            await wait_until(lambda: _completed(queue, 1), within=30)  # backoff is capped
            worker.signal(signal.SIGTERM)
            assert await asyncio.to_thread(worker.wait, 30) == 0
            log = worker.output()
            assert log.count("not reachable") <= 3, log
            assert _starts(ledger) == {job.id: 1}
            await assert_invariants(queue.client, queue_name, completed=1)
    finally:
        server.close()


@pytest.mark.timeout(60)
async def test_s4_sigterm_while_redis_is_unreachable(
    server_factory: ServerFactory, queue_name: str, tmp_path: Path, procs: list[WorkerProcess]
) -> None:
    """S4: SIGTERM while the server is down: the worker exits within the grace period plus
    slack, without a traceback; its job is left to the stalled check, which recovers it once
    the server is back (AOF keeps the state)."""
    server = server_factory(persistence="aof-always")
    url, ledger = server.url, tmp_path / "ledger.jsonl"
    async with Queue(queue_name, url) as queue:
        job = await queue.add("long", {"sleep": 30})
        worker = WorkerProcess(LEDGER_JOB, queue_name, url, ledger=ledger, shutdown_grace=1.0)
        procs.append(worker)
        await wait_until(lambda: _state_is(queue, job.id, JobState.ACTIVE), within=20)
    server.kill()
    worker.signal(signal.SIGTERM)
    sent = time.monotonic()
    await asyncio.to_thread(worker.wait, 30)
    assert time.monotonic() - sent < 1.0 + 8.0
    log = worker.output()
    assert "Traceback" not in log, log
    assert "left to the stalled check" in log
    server.start()
    rescuer = WorkerProcess(LEDGER_JOB, queue_name, url, ledger=ledger)
    procs.append(rescuer)
    async with Queue(queue_name, url) as queue:

        async def rerun() -> bool:
            return _starts(ledger).get(job.id) == 2

        await wait_until(rerun, within=20)
        events = await stream_events(queue.client, queue_name, "stalled")
        assert [e["job_id"] for e in events] == [job.id]
        await assert_invariants(queue.client, queue_name, active=1)


@pytest.mark.timeout(60)
async def test_r1_producer_says_once_that_the_dataset_was_reset(
    fresh_server: FaultServer, queue_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    """R1, producer side: a Queue that added jobs, then writes to the server after it came
    back empty, logs "Redis dataset was reset" once, at its first add, and adds as usual."""
    caplog.set_level(logging.INFO, logger="corral.server")
    async with Queue(queue_name, fresh_server.url) as queue:
        await queue.add("a", {})
        await queue.add("b", {})
        fresh_server.kill()
        fresh_server.restart()

        def resets() -> list[str]:
            found = (r.getMessage() for r in caplog.records)
            return [m for m in found if "Redis dataset was reset" in m]

        await queue.add("after", {})
        assert len(resets()) == 1, "the first add after the restart reports the reset"
        for _ in range(2):
            await queue.add("after", {})
        assert await queue.get_counts("wait") == {"wait": 3}
    assert len(resets()) == 1 and repr(queue_name) in resets()[0], resets()
