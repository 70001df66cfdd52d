"""Worker guards: ``--max-jobs`` and ``--max-memory`` recycle a worker (exit status 4) after it
finishes its jobs; ``--supervise`` restarts it and counts restarts in the heartbeat."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from support.jobs import ledger_job
from support.ledger import check_ledger, read_ledger
from support.workers import WorkerProcess, wait_until

from engine import InvalidJobOptions, JobState, Queue, Worker
from engine.guards import JobBudget, parse_size
from engine.keys import QueueKeys

LEDGER_JOB = "support.jobs:ledger_job"
SANDBOX_JOB = "support.sandbox_jobs:async_job"
EXIT_RECYCLED = 4


async def _exit_status(worker: WorkerProcess, within: float) -> int:
    """Wait for the process to exit; on a timeout, fail with everything it printed."""
    try:
        return await asyncio.to_thread(worker.wait, within)
    except subprocess.TimeoutExpired:
        worker.kill()
        pytest.fail(f"worker did not exit within {within} s; it printed:\n{worker.output()}")


def test_sizes_parse_with_1024_based_units() -> None:
    assert parse_size("512MB") == 512 << 20
    assert parse_size("512m") == 512 << 20
    assert parse_size("1.5G") == 3 << 29
    assert parse_size("2GiB") == 2 << 30
    assert parse_size(64 << 20) == 64 << 20
    for bad in ("lots", "-5MB", "12 parsecs", "", 1000, True):
        with pytest.raises(InvalidJobOptions, match="max_memory"):
            parse_size(bad)


def test_job_budget_cuts_takes_to_what_is_left() -> None:
    budget = JobBudget(3)
    assert budget.allow(2) == 2
    assert budget.take(2) == 2 and not budget.used_up
    assert budget.allow(5) == 1
    assert budget.take(2) == 1 and budget.used_up  # one too many came back: it goes back
    assert budget.allow(1) == 0
    assert JobBudget(None).allow(50) == 50
    with pytest.raises(InvalidJobOptions, match="max_jobs=0"):
        JobBudget(0)


async def test_max_jobs_worker_takes_exactly_that_many_and_returns(
    redis_url: str, queue_name: str
) -> None:
    async with Queue(queue_name, redis_url) as queue:
        await queue.add_bulk([("j", {"sleep": 0.2}) for _ in range(10)])
        # two jobs finishing at once may each take a replacement: one goes straight back
        worker = Worker(queue_name, ledger_job, redis_url, concurrency=2, max_jobs=3)
        await asyncio.wait_for(worker.run(), 30)
        assert worker.recycled == "took its --max-jobs 3 jobs"
        counts = await queue.get_counts("completed", "wait", "active")
        assert counts == {"completed": 3, "wait": 7, "active": 0}


async def test_max_jobs_process_exits_with_status_4_after_finishing_them(
    redis_url: str, queue_name: str, tmp_path: Path, procs: list[WorkerProcess]
) -> None:
    ledger = tmp_path / "ledger.jsonl"
    async with Queue(queue_name, redis_url) as queue:
        await queue.add_bulk([("j", {"sleep": 0.3}) for _ in range(12)])
        worker = WorkerProcess(
            LEDGER_JOB,
            queue_name,
            redis_url,
            ledger=ledger,
            concurrency=3,
            extra_args=("--max-jobs", "5"),
        )
        procs.append(worker)
        status = await _exit_status(worker, 60)
        assert status == EXIT_RECYCLED, worker.output()
        assert "recycling: took its --max-jobs 5 jobs" in worker.output()
        assert await queue.get_counts("completed", "wait", "active") == {
            "completed": 5,
            "wait": 7,
            "active": 0,
        }
        starts = [x for x in read_ledger(ledger) if x["kind"] == "start"]
        finishes = [x for x in read_ledger(ledger) if x["kind"] == "finish"]
        assert len(starts) == len(finishes) == 5


async def test_max_memory_recycles_before_the_next_job(
    redis_url: str, queue_name: str, procs: list[WorkerProcess]
) -> None:
    async with Queue(queue_name, redis_url) as queue:
        # each job keeps 40 MiB; a worker starts well under 150 MiB
        await queue.add_bulk([("leak", {"leak_mb": 40}) for _ in range(10)])
        worker = WorkerProcess(
            SANDBOX_JOB, queue_name, redis_url, extra_args=("--max-memory", "150MB")
        )
        procs.append(worker)
        status = await _exit_status(worker, 60)
        output = worker.output()
        assert status == EXIT_RECYCLED, output
        assert "MiB is over --max-memory 150 MiB" in output
        counts = await queue.get_counts("completed", "wait", "active")
        assert 1 <= counts["completed"] <= 5 and counts["active"] == 0
        assert counts["completed"] + counts["wait"] == 10


async def test_max_memory_replaces_a_sandbox_child_that_grew_over_it(
    redis_url: str, queue_name: str, procs: list[WorkerProcess]
) -> None:
    async with Queue(queue_name, redis_url) as queue:
        leak = await queue.add("leak", {"leak_mb": 200})
        worker = WorkerProcess(
            SANDBOX_JOB,
            queue_name,
            redis_url,
            extra_args=("--sandbox", "1", "--max-memory", "150MB"),
        )
        procs.append(worker)

        async def leaked() -> bool:
            return await queue.get_job_state(leak.id) is JobState.COMPLETED

        await wait_until(leaked, within=30)
        after = await queue.add("next", {})

        async def next_done() -> bool:
            return await queue.get_job_state(after.id) is JobState.COMPLETED

        await wait_until(next_done, within=30)
        first, second = (await queue.get_job(leak.id), await queue.get_job(after.id))
        assert first is not None and second is not None
        assert first.returnvalue["pid"] != second.returnvalue["pid"]
        assert worker.proc.poll() is None  # the worker itself stays
        worker.signal(signal.SIGTERM)
        assert await _exit_status(worker, 20) == 0
        assert "over the 150 MiB limit; replacing it" in worker.output()


async def _heartbeats(redis: aioredis.Redis, queue: str) -> list[dict[str, str]]:
    keys = QueueKeys(queue)
    ids: Any = await redis.zrange(keys.workers, 0, -1)
    beats: list[Any] = [await redis.hgetall(keys.worker(str(i))) for i in ids]
    return [{str(k): str(v) for k, v in b.items()} for b in beats if b]


@pytest.mark.timeout(120)
async def test_supervisor_restarts_recycled_and_killed_workers_and_counts_restarts(
    redis_url: str,
    queue_name: str,
    redis: aioredis.Redis,
    tmp_path: Path,
    procs: list[WorkerProcess],
) -> None:
    ledger = tmp_path / "ledger.jsonl"
    async with Queue(queue_name, redis_url) as queue:
        jobs = await queue.add_bulk([("j", {"sleep": 0.05}) for _ in range(12)])
        supervisor = WorkerProcess(
            LEDGER_JOB,
            queue_name,
            redis_url,
            ledger=ledger,
            concurrency=2,
            extra_args=("--max-jobs", "4", "--supervise"),
        )
        procs.append(supervisor)

        async def all_done() -> bool:
            return (await queue.get_counts("completed"))["completed"] == 12

        await wait_until(all_done, within=60)
        check = check_ledger(ledger, {j.id for j in jobs}, {j.id for j in jobs})
        assert not check.lost and not check.duplicated
        assert all(n == 1 for n in check.finishes.values())
        pids = {x["pid"] for x in read_ledger(ledger)}
        assert len(pids) == 3 and supervisor.proc.pid not in pids

        # the fourth worker is waiting for work; its heartbeat says it is the third restart
        async def fourth_beats() -> bool:
            return any(b.get("restarts") == "3" for b in await _heartbeats(redis, queue_name))

        await wait_until(fourth_beats, within=30)
        (fourth,) = [b for b in await _heartbeats(redis, queue_name) if b["restarts"] == "3"]

        # a worker that is killed comes back too (after a back-off), and is counted
        os.kill(int(fourth["pid"]), signal.SIGKILL)

        async def fifth_beats() -> bool:
            return any(b.get("restarts") == "4" for b in await _heartbeats(redis, queue_name))

        await wait_until(fifth_beats, within=30)
        (fifth,) = [b for b in await _heartbeats(redis, queue_name) if b["restarts"] == "4"]
        later = await queue.add("j", {})

        async def later_done() -> bool:
            return await queue.get_job_state(later.id) is JobState.COMPLETED

        await wait_until(later_done, within=30)

        supervisor.signal(signal.SIGTERM)
        assert await _exit_status(supervisor, 30) == 0
        with pytest.raises(ProcessLookupError):
            os.kill(int(fifth["pid"]), 0)


async def test_supervisor_stops_on_a_usage_error(
    redis_url: str, queue_name: str, procs: list[WorkerProcess]
) -> None:
    supervisor = WorkerProcess(
        "support.jobs:no_such_processor", queue_name, redis_url, extra_args=("--supervise",)
    )
    procs.append(supervisor)
    assert await _exit_status(supervisor, 30) == 2
    assert "cannot load processor" in supervisor.output()
