"""Timeouts: ``timeout_ms`` per job and per worker; async processors are cancelled at the
deadline, ``def`` processors' threads are abandoned; a timeout is a ``JobTimeout`` failure."""

from __future__ import annotations

import asyncio
import json
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from support.ledger import read_ledger
from support.streams import stream_events
from support.workers import WorkerProcess, running_worker, wait_until

from engine import InvalidJobOptions, Job, JobState, JobTimeout, Queue, Worker


async def settled(queue: Queue, n: int, within: float = 15) -> None:
    async def done() -> bool:
        counts = await queue.get_counts("completed", "failed")
        return counts["completed"] + counts["failed"] >= n

    await wait_until(done, within=within)


async def test_async_processor_is_cancelled_at_the_deadline_and_retried(
    redis_url: str, queue_name: str, redis: aioredis.Redis
) -> None:
    seen: list[str] = []

    async def process(job: Job) -> Any:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError as exc:
            seen.append(str(exc))
            raise
        return "never"

    async with Queue(queue_name, redis_url) as queue:
        added = await queue.add("slow", {}, attempts=2, timeout_ms=200)
        started = time.monotonic()
        async with running_worker(queue_name, process, redis_url):
            await settled(queue, 1)
        assert time.monotonic() - started < 10
        job = await queue.get_job(added.id)
        assert job is not None and job.state is JobState.FAILED
        assert job.failed_reason == "timed out after 0.2 s"
        assert job.attempts_made == 2  # retried once, as any failure
        assert seen == ["timed out after 0.2 s"] * 2  # the processor saw why
        assert any("in process" in line for line in job.stacktrace)  # where it was stuck
        assert "asyncio.sleep(30)" in "\n".join(job.stacktrace)
        (retrying,) = await stream_events(redis, queue_name, "retrying")
        assert retrying["failed_reason"] == "timed out after 0.2 s"
        (failed,) = await stream_events(redis, queue_name, "failed")
        assert failed["failed_reason"] == "timed out after 0.2 s"


async def test_worker_default_timeout_and_a_job_that_turns_it_off(
    redis_url: str, queue_name: str
) -> None:
    async def process(job: Job) -> Any:
        await asyncio.sleep(0.6)
        return "done"

    async with Queue(queue_name, redis_url) as queue:
        limited = await queue.add("limited", {})
        unlimited = await queue.add("unlimited", {}, timeout_ms=0)
        longer = await queue.add("longer", {}, timeout_ms=5_000)
        async with running_worker(queue_name, process, redis_url, concurrency=3, timeout_ms=300):
            await settled(queue, 3)
        job = await queue.get_job(limited.id)
        assert job is not None and job.state is JobState.FAILED
        assert job.failed_reason == "timed out after 0.3 s"
        for ok in (unlimited, longer):
            job = await queue.get_job(ok.id)
            assert job is not None and job.state is JobState.COMPLETED


async def test_an_async_processor_that_ignores_cancellation_still_fails_as_timed_out(
    redis_url: str, queue_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    async def process(job: Job) -> Any:
        for _ in range(15):
            try:
                await asyncio.sleep(0.1)
            except asyncio.CancelledError:
                continue  # badly behaved: swallows every cancellation
        return "too late"

    async with Queue(queue_name, redis_url) as queue:
        added = await queue.add("stubborn", {}, timeout_ms=200)
        async with running_worker(queue_name, process, redis_url):
            await settled(queue, 1)
        job = await queue.get_job(added.id)
        assert job is not None and job.state is JobState.FAILED
        assert job.failed_reason == "timed out after 0.2 s"
        assert job.returnvalue is None
        assert "ignored its cancellation" in caplog.text


async def test_sync_processor_thread_is_abandoned_and_can_see_its_deadline(
    redis_url: str, queue_name: str
) -> None:
    release = threading.Event()
    raised: list[str] = []

    def process(job: Job) -> Any:
        if job.name == "stuck":
            release.wait(30)
            try:
                job.raise_if_cancelled()
            except JobTimeout as exc:
                raised.append(str(exc))
            return "late"
        return "quick"

    async with Queue(queue_name, redis_url) as queue:
        stuck = await queue.add("stuck", {}, timeout_ms=200)
        async with running_worker(queue_name, process, redis_url, concurrency=1) as worker:
            await settled(queue, 1)
            assert worker.abandoned_threads == 1
            # the slot is free again although the thread still runs
            quick = await queue.add("quick", {})
            await settled(queue, 2)
            release.set()

            async def thread_gone() -> bool:
                return worker.abandoned_threads == 0

            await wait_until(thread_gone, within=10)
        assert raised == ["timed out after 0.2 s"]
        job = await queue.get_job(stuck.id)
        assert job is not None and job.state is JobState.FAILED
        assert job.failed_reason == "timed out after 0.2 s"
        assert job.returnvalue is None  # the late result was ignored
        assert any("release.wait" in line for line in job.stacktrace)
        done = await queue.get_job(quick.id)
        assert done is not None and done.returnvalue == "quick"


def test_bad_timeouts_are_refused_with_the_option_named() -> None:
    async def process(job: Job) -> Any:
        return None

    with pytest.raises(InvalidJobOptions, match="timeout_ms=-1"):
        Queue("q")._prepare("a", {}, {"timeout_ms": -1})
    with pytest.raises(InvalidJobOptions, match="timeout_ms='5s'"):
        Queue("q")._prepare("a", {}, {"timeout_ms": "5s"})
    with pytest.raises(InvalidJobOptions, match="timeout_ms=True"):
        Worker("q", process, timeout_ms=True)
    prepared = Queue("q")._prepare("a", {}, {"timeout_ms": 1500})
    assert json.loads(prepared["opts"])["timeout_ms"] == 1500


@pytest.mark.timeout(90)
async def test_timed_out_sync_job_in_a_real_worker_process(
    redis_url: str, queue_name: str, tmp_path: Path, procs: list[WorkerProcess]
) -> None:
    """A ``def`` processor blocked for 60 s in ``corral worker --timeout-ms 500``: the job
    fails at the deadline, the next job runs meanwhile, and SIGTERM still exits at once."""
    ledger = tmp_path / "ledger.jsonl"
    async with Queue(queue_name, redis_url) as queue:
        stuck = await queue.add("stuck", {"sleep": 60})
        proc = WorkerProcess(
            "support.jobs:blocking_job",
            queue_name,
            redis_url,
            ledger=ledger,
            extra_args=["--timeout-ms", "500"],
        )
        procs.append(proc)

        async def stuck_failed() -> bool:
            return await queue.get_job_state(stuck.id) is JobState.FAILED

        await wait_until(stuck_failed, within=30)
        job = await queue.get_job(stuck.id)
        assert job is not None and job.failed_reason == "timed out after 0.5 s"
        assert job.processed_on is not None and job.finished_on is not None
        assert 500 <= job.finished_on - job.processed_on < 3_000
        assert any("time.sleep" in line for line in job.stacktrace)

        quick = await queue.add("quick", {"sleep": 0})
        await settled(queue, 2)
        assert await queue.get_job_state(quick.id) is JobState.COMPLETED

        stopping = time.monotonic()
        proc.signal(signal.SIGTERM)
        assert await asyncio.to_thread(proc.wait, 20) == 0
        assert time.monotonic() - stopping < 10  # the abandoned thread does not hold the exit
        output = proc.output()
        assert "abandoned" in output and "timed out after 0.5 s" in output
        finished = {str(x["job_id"]) for x in read_ledger(ledger) if x["kind"] == "finish"}
        assert finished == {quick.id}  # the stuck thread never got to finish
