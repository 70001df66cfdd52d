"""Sandboxed processors (``Worker(sandbox=...)``): jobs run in child processes, and what a child
does (values, progress, logs, errors, crashes, being killed) comes back as if run in-process."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from support.sandbox_jobs import async_job, cpu_job
from support.streams import stream_events
from support.workers import running_worker, wait_until

from engine import InvalidJobOptions, Job, JobState, Queue, Worker
from engine.errors import SandboxStartError
from engine.sandbox import SandboxPool, exit_reason


async def _finished(queue: Queue, n: int, within: float = 30) -> None:
    async def done() -> bool:
        counts = await queue.get_counts("completed", "failed")
        return counts["completed"] + counts["failed"] >= n

    await wait_until(done, within=within)


async def _job(queue: Queue, job_id: str) -> Job:
    job = await queue.get_job(job_id)
    assert job is not None
    return job


@pytest.mark.parametrize("processor", [async_job, cpu_job], ids=["async", "def"])
async def test_sandboxed_job_returns_its_value_progress_and_logs_from_a_child(
    redis_url: str, queue_name: str, redis: aioredis.Redis, processor: Any
) -> None:
    async with Queue(queue_name, redis_url) as queue:
        added = await queue.add("a", {"progress": {"pct": 50}, "log": "half way"})
        async with running_worker(queue_name, processor, redis_url, sandbox=True) as worker:
            await _finished(queue, 1)
            pids = worker._sandbox.pids if worker._sandbox else []
        job = await _job(queue, added.id)
        assert job.state is JobState.COMPLETED, job.failed_reason
        assert job.returnvalue["pid"] != os.getpid()
        assert job.returnvalue["pid"] in pids
        assert job.progress == {"pct": 50}
        assert await queue.get_job_logs(added.id) == ["half way"]
        assert len(await stream_events(redis, queue_name, "progress")) == 1


async def test_children_run_jobs_in_parallel(redis_url: str, queue_name: str) -> None:
    async with Queue(queue_name, redis_url) as queue:
        jobs = await queue.add_bulk([("cpu", {"sleep": 0.5}) for _ in range(4)])
        async with running_worker(queue_name, cpu_job, redis_url, concurrency=2, sandbox=True):
            await _finished(queue, 4)
        values = [(await _job(queue, j.id)).returnvalue for j in jobs]
        assert len({v["pid"] for v in values}) == 2


async def test_errors_raised_in_a_child_keep_their_class_reason_and_traceback(
    redis_url: str, queue_name: str
) -> None:
    async with Queue(queue_name, redis_url) as queue:
        value = await queue.add("v", {"raise": "value"}, attempts=1)
        final = await queue.add("u", {"raise": "unrecoverable"}, attempts=5)
        custom = await queue.add("c", {"raise": "needs-args"}, attempts=1)
        exits = await queue.add("s", {"raise": "system-exit"}, attempts=1)
        retry = await queue.add("r", {"retry": 50}, attempts=2)
        # the worker refuses the progress; its error is raised in the child, at the call
        big = await queue.add("p", {"progress": "x" * 70_000}, attempts=3)
        async with running_worker(queue_name, async_job, redis_url, sandbox=1):
            await _finished(queue, 6)
        job = await _job(queue, value.id)
        assert job.failed_reason == f"ValueError: bad value in job {value.id}"
        assert any("sandbox_jobs.py" in line and "_act" in line for line in job.stacktrace)
        job = await _job(queue, final.id)
        assert (job.state, job.attempts_made) == (JobState.FAILED, 1)
        assert job.failed_reason == "UnrecoverableError: give up"
        # an exception pickle cannot rebuild still shows its own class name and message
        assert (await _job(queue, custom.id)).failed_reason == "NeedsArgs: code 7: custom"
        assert (await _job(queue, exits.id)).failed_reason == "SystemExit: 3"
        job = await _job(queue, retry.id)
        assert (job.state, job.attempts_made) == (JobState.FAILED, 2)
        assert job.failed_reason == "Retry: try later"
        job = await _job(queue, big.id)
        assert (job.state, job.attempts_made) == (JobState.FAILED, 1)
        assert job.failed_reason is not None
        assert job.failed_reason.startswith(f"PayloadTooLarge: progress of job '{big.id}'")
        assert any("update_progress" in line for line in job.stacktrace)


async def test_a_child_that_exits_fails_its_job_by_policy_and_is_replaced(
    redis_url: str, queue_name: str, redis: aioredis.Redis
) -> None:
    async with Queue(queue_name, redis_url) as queue:
        dies = await queue.add("dies", {"exit": 3}, attempts=2)
        async with running_worker(queue_name, async_job, redis_url, sandbox=1) as worker:
            await _finished(queue, 1)
            after = await queue.add("next", {})
            await _finished(queue, 2)
            assert worker._sandbox is not None
            assert worker._sandbox.stats.exited == 2
        job = await _job(queue, dies.id)
        assert (job.state, job.attempts_made) == (JobState.FAILED, 2)
        assert job.failed_reason == "ProcessorExited: processor exited: exit code 3"
        (retrying,) = await stream_events(redis, queue_name, "retrying")
        assert retrying["failed_reason"] == job.failed_reason
        assert (await _job(queue, after.id)).state is JobState.COMPLETED


async def test_kill_sandboxed_fails_the_job_with_the_error_given(
    redis_url: str, queue_name: str
) -> None:
    class Killed(Exception):
        pass

    async with Queue(queue_name, redis_url) as queue:
        slow = await queue.add("slow", {"sleep": 60}, attempts=1)
        plain = await queue.add("slow", {"sleep": 60}, attempts=1)
        async with running_worker(
            queue_name, cpu_job, redis_url, concurrency=2, sandbox=True
        ) as worker:

            async def both_running() -> bool:
                return len(await queue.get_job_ids("active", 0, -1)) == 2

            await wait_until(both_running, within=20)
            await asyncio.sleep(0.3)  # the children have the jobs
            assert worker.kill_sandboxed(slow.id, Killed("timed out after 60 s"))
            assert worker.kill_sandboxed(plain.id)
            assert not worker.kill_sandboxed("no-such-job")
            await _finished(queue, 2)
        assert (await _job(queue, slow.id)).failed_reason == "Killed: timed out after 60 s"
        reason = (await _job(queue, plain.id)).failed_reason
        assert reason == "ProcessorExited: processor exited: signal SIGKILL"


async def test_shutdown_hands_back_a_sandboxed_job_and_kills_its_child(
    redis_url: str, queue_name: str, tmp_path: Path
) -> None:
    async with Queue(queue_name, redis_url) as queue:
        added = await queue.add("slow", {"sleep": 60})
        worker = Worker(
            queue_name, cpu_job, redis_url, sandbox=True, shutdown_grace=0.2, block_timeout=1
        )
        task = asyncio.create_task(worker.run())

        async def running() -> bool:
            return await queue.get_job_state(added.id) is JobState.ACTIVE

        await wait_until(running, within=20)
        assert worker._sandbox is not None
        (pid,) = worker._sandbox.pids
        await worker.close()
        await asyncio.wait_for(task, 20)
        assert worker.handed_back == [added.id]
        assert await queue.get_job_state(added.id) is JobState.WAIT
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_processor_must_be_importable_by_a_child(redis_url: str) -> None:
    def local(job: Job) -> None:
        return None

    for bad in (local, lambda job: None):
        with pytest.raises(InvalidJobOptions, match="cannot be sandboxed"):
            Worker("q", bad, redis_url, sandbox=True)
    with pytest.raises(InvalidJobOptions, match="sandbox size=0"):
        Worker("q", async_job, redis_url, sandbox=0)


async def test_a_child_that_cannot_load_the_processor_stops_the_pool_from_starting() -> None:
    pool = SandboxPool("support.sandbox_jobs:no_such_function", 1, max_result=1024)
    with pytest.raises(SandboxStartError, match="no_such_function"):
        await pool.start()
    pool = SandboxPool("support.sandbox_jobs:not_a_function", 1, max_result=1024)
    with pytest.raises(SandboxStartError, match="not callable"):
        await pool.start()


def test_exit_reasons_name_the_signal_or_code() -> None:
    assert exit_reason(-9) == "processor exited: signal SIGKILL"
    assert exit_reason(-11) == "processor exited: signal SIGSEGV"
    assert exit_reason(1) == "processor exited: exit code 1"
