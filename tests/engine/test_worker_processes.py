"""Real ``corral worker`` processes, killed and signalled: stalled recovery (W1-W3) and
shutdown (S1-S3), checked against the execution ledger kept outside Redis."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from support.invariants import assert_invariants
from support.ledger import check_ledger, read_ledger
from support.streams import stream_events
from support.workers import WorkerProcess, wait_until

from engine import JobState, Queue
from engine.keys import QueueKeys

LEDGER_JOB = "support.jobs:ledger_job"


@pytest.fixture
def procs() -> Iterator[list[WorkerProcess]]:
    started: list[WorkerProcess] = []
    yield started
    for proc in started:
        proc.stop()


async def _stalled_events(redis: aioredis.Redis, queue: str) -> list[str]:
    return [e["job_id"] for e in await stream_events(redis, queue, "stalled")]


async def _active_ids(queue: Queue) -> set[str]:
    return set(await queue.get_job_ids("active", 0, -1))


@pytest.mark.timeout(90)
async def test_killed_worker_jobs_are_recovered_and_complete_exactly_once(
    redis_url: str,
    queue_name: str,
    redis: aioredis.Redis,
    tmp_path: Path,
    procs: list[WorkerProcess],
) -> None:
    """W1: SIGKILL a worker holding jobs; another worker recovers them through the stalled
    check; every job completes, completions are recorded once, re-runs only for the killed."""
    ledger = tmp_path / "ledger.jsonl"
    async with Queue(queue_name, redis_url) as queue:
        jobs = await queue.add_bulk([("j", {"sleep": 0.5}) for _ in range(40)])
        added = {j.id for j in jobs}
        victim = WorkerProcess(LEDGER_JOB, queue_name, redis_url, ledger=ledger, concurrency=10)
        procs.append(victim)

        async def victim_holds_jobs() -> bool:
            return len(await _active_ids(queue)) == 10

        await wait_until(victim_holds_jobs, within=20)
        held = await _active_ids(queue)
        victim.kill()
        killed_at = time.monotonic()
        rescuer = WorkerProcess(LEDGER_JOB, queue_name, redis_url, ledger=ledger, concurrency=10)
        procs.append(rescuer)

        async def held_recovered() -> bool:
            return not (held & await _active_ids(queue)) or (
                (await queue.get_counts("completed"))["completed"] == 40
            )

        await wait_until(held_recovered, within=20)
        # lock 1 s + 2 x stalled interval 0.5 s, plus the rescuer's start-up and slack
        assert time.monotonic() - killed_at < 1.0 + 2 * 0.5 + 6.0

        async def all_done() -> bool:
            return (await queue.get_counts("completed"))["completed"] == 40

        await wait_until(all_done, within=30)
        completed = set(await queue.get_job_ids("completed", 0, -1))
        assert await queue.get_totals() == (40, 0)
        stalled = await _stalled_events(redis, queue_name)
        result = check_ledger(ledger, added, completed, recovered=stalled)
        assert result.lost == set() and result.unexpected == set()
        assert result.duplicated == set()  # a job finished twice only after it was recovered
        rerun = {j for j, n in result.starts.items() if n > 1}
        assert rerun <= held
        assert sorted(stalled) == sorted(set(stalled))  # one stalled event per job
        assert set(stalled) <= held
        for job_id in stalled:
            job = await queue.get_job(job_id)
            assert job is not None and job.stalled_count == 1
        await assert_invariants(redis, queue_name, completed=40)


@pytest.mark.timeout(60)
async def test_new_worker_recovers_jobs_of_a_dead_one_on_its_first_sweeps(
    redis_url: str,
    queue_name: str,
    redis: aioredis.Redis,
    tmp_path: Path,
    procs: list[WorkerProcess],
) -> None:
    """W2: nobody else running; a worker started later recovers the jobs within ~2 sweeps."""
    ledger = tmp_path / "ledger.jsonl"
    async with Queue(queue_name, redis_url) as queue:
        await queue.add_bulk([("j", {"sleep": 30}) for _ in range(3)])
        first = WorkerProcess(LEDGER_JOB, queue_name, redis_url, ledger=ledger, concurrency=3)
        procs.append(first)

        async def holds() -> bool:
            return len(await _active_ids(queue)) == 3

        await wait_until(holds, within=20)
        first.kill()
        await asyncio.sleep(1.5)  # the locks (1 s) have lapsed; nobody has swept yet
        await redis.delete(QueueKeys(queue_name).stalled_check)
        second = WorkerProcess(LEDGER_JOB, queue_name, redis_url, ledger=ledger, concurrency=3)
        procs.append(second)
        started = time.monotonic()

        async def rerun() -> bool:
            starts = [x for x in read_ledger(ledger) if x["kind"] == "start"]
            return len(starts) == 6

        await wait_until(rerun, within=15)
        assert time.monotonic() - started < 2 * 0.5 + 5.0  # start-up + two sweeps + slack
        assert len(await _stalled_events(redis, queue_name)) == 3
        await assert_invariants(redis, queue_name, active=3)


@pytest.mark.timeout(90)
async def test_poison_pill_fails_after_the_stall_limit(
    redis_url: str, queue_name: str, tmp_path: Path, procs: list[WorkerProcess]
) -> None:
    """W3: a job that kills its worker every time ends failed after max_stalled_count + 1
    executions; the other jobs complete; a supervisor restarts the worker after each death."""
    ledger = tmp_path / "ledger.jsonl"
    async with Queue(queue_name, redis_url) as queue:
        pill = await queue.add("pill", {"die": True})
        others = await queue.add_bulk([("j", {"sleep": 0}) for _ in range(5)])

        async def pill_failed() -> bool:
            return await queue.get_job_state(pill.id) is JobState.FAILED

        deadline = time.monotonic() + 60
        while not await pill_failed():
            assert time.monotonic() < deadline, "poison pill never failed"
            proc = WorkerProcess(LEDGER_JOB, queue_name, redis_url, ledger=ledger)
            procs.append(proc)
            for _ in range(100):  # supervise: restart once it dies
                if proc.proc.poll() is not None or await pill_failed():
                    break
                await asyncio.sleep(0.1)

        async def others_done() -> bool:
            return (await queue.get_counts("completed"))["completed"] == 5

        await wait_until(others_done, within=20)
        job = await queue.get_job(pill.id)
        assert job is not None and job.failed_reason is not None
        assert "stalled more than allowable limit" in job.failed_reason
        starts = [x for x in read_ledger(ledger) if x["kind"] == "start" and x["job_id"] == pill.id]
        assert len(starts) == 2  # max_stalled_count (1) + 1
        for other in others:
            assert await queue.get_job_state(other.id) is JobState.COMPLETED
        await assert_invariants(queue.client, queue_name, failed=1, completed=5)


@pytest.mark.timeout(60)
async def test_sigterm_lets_running_jobs_finish_and_takes_no_new_ones(
    redis_url: str,
    queue_name: str,
    redis: aioredis.Redis,
    tmp_path: Path,
    procs: list[WorkerProcess],
) -> None:
    """S1: SIGTERM with 5 in-flight 2 s jobs: they complete, nothing else starts, exit 0."""
    ledger = tmp_path / "ledger.jsonl"
    async with Queue(queue_name, redis_url) as queue:
        await queue.add_bulk([("j", {"sleep": 2.0}) for _ in range(15)])
        proc = WorkerProcess(LEDGER_JOB, queue_name, redis_url, ledger=ledger, concurrency=5)
        procs.append(proc)

        async def busy() -> bool:
            return len([x for x in read_ledger(ledger) if x["kind"] == "start"]) == 5

        await wait_until(busy, within=20)
        proc.signal(signal.SIGTERM)
        sent = time.monotonic()
        status = await asyncio.to_thread(proc.wait, 20)
        assert status == 0, proc.output()
        assert time.monotonic() - sent < 2.0 + 3.0
        lines = read_ledger(ledger)
        assert len([x for x in lines if x["kind"] == "start"]) == 5
        assert len([x for x in lines if x["kind"] == "finish"]) == 5
        counts = await queue.get_counts()
        assert counts["completed"] == 5 and counts["wait"] == 10 and counts["active"] == 0
        assert await _stalled_events(redis, queue_name) == []
        await assert_invariants(redis, queue_name, completed=5, wait=10)


@pytest.mark.timeout(60)
async def test_job_outliving_the_grace_period_is_handed_back(
    redis_url: str, queue_name: str, tmp_path: Path, procs: list[WorkerProcess]
) -> None:
    """S2: grace 1 s, job 60 s: the job goes straight back to wait (attempt not counted) and
    the process exits with status 3, naming the job."""
    ledger = tmp_path / "ledger.jsonl"
    async with Queue(queue_name, redis_url) as queue:
        job = await queue.add("long", {"sleep": 60})
        proc = WorkerProcess(LEDGER_JOB, queue_name, redis_url, ledger=ledger, shutdown_grace=1.0)
        procs.append(proc)

        async def running() -> bool:
            return await queue.get_job_state(job.id) is JobState.ACTIVE

        await wait_until(running, within=20)
        proc.signal(signal.SIGTERM)
        status = await asyncio.to_thread(proc.wait, 20)
        assert status == 3
        assert f"handed back unfinished job(s) {job.id}" in proc.output()
        back = await queue.get_job(job.id)
        assert back is not None and back.state is JobState.WAIT
        assert back.attempts_started == 0 and back.attempts_made == 0
        await assert_invariants(queue.client, queue_name, wait=1)


@pytest.mark.timeout(60)
async def test_second_signal_hands_back_at_once(
    redis_url: str, queue_name: str, tmp_path: Path, procs: list[WorkerProcess]
) -> None:
    """S3: a second SIGTERM during the graceful shutdown hands back within a second."""
    ledger = tmp_path / "ledger.jsonl"
    async with Queue(queue_name, redis_url) as queue:
        jobs = await queue.add_bulk([("long", {"sleep": 60}) for _ in range(3)])
        proc = WorkerProcess(LEDGER_JOB, queue_name, redis_url, ledger=ledger, concurrency=3)
        procs.append(proc)

        async def running() -> bool:
            return len(await _active_ids(queue)) == 3

        await wait_until(running, within=20)
        proc.signal(signal.SIGTERM)
        await asyncio.sleep(0.3)
        proc.signal(signal.SIGTERM)
        sent = time.monotonic()
        status = await asyncio.to_thread(proc.wait, 20)
        assert time.monotonic() - sent < 1.5
        assert status == 3
        counts = await queue.get_counts()
        assert counts["wait"] == 3 and counts["active"] == 0
        assert {j.id for j in jobs} == set(await queue.get_job_ids("wait", 0, -1))
        await assert_invariants(queue.client, queue_name, wait=3)
