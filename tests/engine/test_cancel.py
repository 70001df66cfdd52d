"""Cancelling jobs: ``Queue.cancel_job`` on waiting and running jobs, the ``cancel_job`` script
called directly, and a running job cancelled in a real ``corral worker`` process."""

from __future__ import annotations

import asyncio
import signal
import threading
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from support.ledger import read_ledger
from support.streams import stream_events
from support.workers import WorkerProcess, running_worker, wait_until

from engine import (
    InvalidJobOptions,
    Job,
    JobNotFound,
    JobState,
    JobStateError,
    Queue,
    commands,
)
from engine.keys import QueueKeys
from engine.scripts import ScriptRegistry


async def state_is(queue: Queue, job_id: str, state: JobState, within: float = 15) -> None:
    async def reached() -> bool:
        return await queue.get_job_state(job_id) is state

    await wait_until(reached, within=within)


def _ms(event: dict[str, str]) -> int:
    return int(event["_id"].split("-")[0])


async def test_running_async_job_is_cancelled_within_a_second_and_not_retried(
    redis_url: str, queue_name: str, redis: aioredis.Redis
) -> None:
    seen: list[tuple[str, bool]] = []
    started = asyncio.Event()

    async def process(job: Job) -> Any:
        started.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError as exc:
            seen.append((str(exc), job.cancelled))
            raise
        return "never"

    async with Queue(queue_name, redis_url) as queue:
        added = await queue.add("long", {}, attempts=3)
        # a long lock: the periodic re-check (every 15 s) cannot be what finds the cancel
        async with running_worker(queue_name, process, redis_url, lock_duration=30_000):
            await asyncio.wait_for(started.wait(), 15)
            result = await queue.cancel_job(added.id, by="alice")
            assert (result.state, result.done) == (JobState.ACTIVE, False)
            await state_is(queue, added.id, JobState.FAILED)
        job = await queue.get_job(added.id)
        assert job is not None
        assert job.failed_reason == "cancelled by alice"
        assert job.attempts_made == 1  # attempts=3, but a cancel is never retried
        assert seen == [("cancelled by alice", True)]
        (cancelled,) = await stream_events(redis, queue_name, "cancelled")
        assert (cancelled["job_id"], cancelled["by"], cancelled["prev"]) == (
            added.id,
            "alice",
            "active",
        )
        (failed,) = await stream_events(redis, queue_name, "failed")
        assert failed["failed_reason"] == "cancelled by alice"
        assert _ms(failed) - _ms(cancelled) < 1000  # on the server clock
        assert await stream_events(redis, queue_name, "retrying") == []
        assert await queue.get_totals() == (0, 1)


async def test_waiting_delayed_prioritized_and_paused_jobs_fail_at_once(
    redis_url: str, queue_name: str, redis: aioredis.Redis
) -> None:
    async with Queue(queue_name, redis_url) as queue:
        waiting = await queue.add("w", {})
        delayed = await queue.add("d", {}, delay=60_000)
        prioritized = await queue.add("p", {}, priority=2)
        other = await queue.add("other", {})
        expected = {
            waiting.id: JobState.WAIT,
            delayed.id: JobState.DELAYED,
            prioritized.id: JobState.PRIORITIZED,
        }
        for job_id, state in expected.items():
            result = await queue.cancel_job(job_id, by="ops")
            assert (result.state, result.done) == (state, True)
        await queue.pause()
        paused = await queue.add("x", {})
        expected[paused.id] = JobState.PAUSED
        assert (await queue.cancel_job(paused.id, by="ops")).state is JobState.PAUSED
        for job_id in expected:
            job = await queue.get_job(job_id)
            assert job is not None and job.state is JobState.FAILED
            assert job.failed_reason == "cancelled by ops" and job.attempts_made == 0
            assert job.finished_on is not None
        counts = await queue.get_counts("wait", "paused", "delayed", "prioritized", "failed")
        assert counts == {"wait": 0, "paused": 1, "delayed": 0, "prioritized": 0, "failed": 4}
        assert await queue.get_job_state(other.id) is JobState.PAUSED  # untouched
        events = await stream_events(redis, queue_name, "cancelled")
        assert [(e["job_id"], e["prev"]) for e in events] == [
            (i, s.value) for i, s in expected.items()
        ]
        assert len(await stream_events(redis, queue_name, "failed")) == 4
        assert await queue.get_totals() == (0, 4)


async def test_cancelled_job_with_remove_on_fail_is_deleted(
    redis_url: str, queue_name: str
) -> None:
    async with Queue(queue_name, redis_url) as queue:
        gone = await queue.add("a", {}, remove_on_fail=True)
        kept = [await queue.add("b", {}, remove_on_fail=1) for _ in range(2)]
        await queue.cancel_job(gone.id)
        for job in kept:
            await queue.cancel_job(job.id)
        assert await queue.get_job(gone.id) is None
        assert await queue.get_job_ids("failed") == [kept[1].id]  # keeps the newest 1
        assert await queue.get_totals() == (0, 3)


async def test_finished_missing_and_bad_requests_are_refused(
    redis_url: str, queue_name: str
) -> None:
    async def process(job: Job) -> Any:
        return "ok"

    async with Queue(queue_name, redis_url) as queue:
        done = await queue.add("a", {})
        async with running_worker(queue_name, process, redis_url):
            await state_is(queue, done.id, JobState.COMPLETED)
        with pytest.raises(JobStateError, match="not cancelled: job '1' is now completed"):
            await queue.cancel_job(done.id)
        with pytest.raises(JobNotFound, match="'nope'"):
            await queue.cancel_job("nope")
        with pytest.raises(InvalidJobOptions, match="by=''"):
            await queue.cancel_job(done.id, by="")
        failed = await queue.add("b", {})
        await queue.cancel_job(failed.id)
        with pytest.raises(JobStateError, match="now failed"):
            await queue.cancel_job(failed.id)  # cancelling twice


async def test_sync_processor_sees_job_cancelled(redis_url: str, queue_name: str) -> None:
    started = threading.Event()
    stopped: list[bool] = []

    def process(job: Job) -> Any:
        started.set()
        for _ in range(1500):
            if job.cancelled:
                stopped.append(True)
                job.raise_if_cancelled()
            threading.Event().wait(0.02)
        return "ran to the end"

    async with Queue(queue_name, redis_url) as queue:
        added = await queue.add("sync", {}, attempts=2)
        async with running_worker(queue_name, process, redis_url) as worker:
            await asyncio.to_thread(started.wait, 15)
            await queue.cancel_job(added.id, by="bob")
            await state_is(queue, added.id, JobState.FAILED)

            async def thread_ended() -> bool:
                return worker.abandoned_threads == 0

            await wait_until(thread_ended, within=10)
        job = await queue.get_job(added.id)
        assert job is not None and job.failed_reason == "cancelled by bob"
        assert job.attempts_made == 1
        assert stopped == [True]


async def test_a_missed_publish_is_found_by_the_periodic_recheck(
    redis_url: str, queue_name: str, redis: aioredis.Redis
) -> None:
    """Pub/sub is fire-and-forget: a request written while nobody listened is still found."""
    started = asyncio.Event()

    async def process(job: Job) -> Any:
        started.set()
        await asyncio.sleep(30)

    keys = QueueKeys(queue_name)
    async with Queue(queue_name, redis_url) as queue:
        added = await queue.add("long", {})
        async with running_worker(queue_name, process, redis_url, lock_duration=1000):
            await asyncio.wait_for(started.wait(), 15)
            token = await redis.get(keys.lock(added.id))
            # what cancel_job writes, without the PUBLISH
            await redis.hset(
                keys.job(added.id), mapping={"cancel_token": str(token), "cancelled_by": "cron"}
            )
            await state_is(queue, added.id, JobState.FAILED, within=10)
        job = await queue.get_job(added.id)
        assert job is not None and job.failed_reason == "cancelled by cron"


async def test_a_request_for_another_attempt_is_ignored(
    redis_url: str, queue_name: str, redis: aioredis.Redis
) -> None:
    started = asyncio.Event()

    async def process(job: Job) -> Any:
        started.set()
        await asyncio.sleep(1.5)
        return "finished"

    keys = QueueKeys(queue_name)
    async with Queue(queue_name, redis_url) as queue:
        added = await queue.add("long", {})
        async with running_worker(queue_name, process, redis_url, lock_duration=1000):
            await asyncio.wait_for(started.wait(), 15)
            await redis.hset(
                keys.job(added.id), mapping={"cancel_token": "old:1", "cancelled_by": "x"}
            )
            await redis.publish(keys.cancel_channel, added.id)
            await state_is(queue, added.id, JobState.COMPLETED)


# ---- the script, called directly -----------------------------------------------------------


async def test_cancel_job_script_directly(
    redis: aioredis.Redis, queue_name: str, redis_url: str
) -> None:
    keys = QueueKeys(queue_name)
    scripts = ScriptRegistry(redis)
    async with Queue(queue_name, redis_url) as queue:
        running = await queue.add("r", {})
        waiting = await queue.add("w", {})
        taken = await commands.move_to_active(
            scripts, keys, commands.Lease("base", 30_000, "w1", 1)
        )
        assert [t.id for t in taken.jobs] == [running.id]
        token = taken.jobs[0].token
        pubsub = redis.pubsub()
        await pubsub.subscribe(keys.cancel_channel)

        reply = await commands.cancel_job(scripts, keys, running.id, "ann")
        assert reply == commands.CancelReply("active", False)
        fields = await redis.hmget(keys.job(running.id), "cancel_token", "cancelled_by")
        assert fields == [token, "ann"]
        message = None
        for _ in range(50):
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.1)
            if message is not None:
                break
        assert message is not None and message["data"] == running.id
        assert await queue.get_job_state(running.id) is JobState.ACTIVE  # the worker ends it
        # asking again changes nothing and emits nothing
        assert await commands.cancel_job(scripts, keys, running.id, "bob") == reply
        assert len(await stream_events(redis, queue_name, "cancelled")) == 1
        assert await redis.hget(keys.job(running.id), "cancelled_by") == "ann"
        await pubsub.aclose()  # type: ignore[no-untyped-call]

        # the lock is gone (its worker died): failed here and now
        await redis.delete(keys.lock(running.id))
        assert await commands.cancel_job(scripts, keys, running.id, "ann") == (
            commands.CancelReply("active", True)
        )
        assert await queue.get_job_state(running.id) is JobState.FAILED
        assert await redis.zscore(keys.active, running.id) is None

        assert await commands.cancel_job(scripts, keys, waiting.id, "ann") == (
            commands.CancelReply("wait", True)
        )
        with pytest.raises(JobStateError, match="cannot be cancelled"):
            await commands.cancel_job(scripts, keys, waiting.id, "ann")
        with pytest.raises(JobNotFound):
            await commands.cancel_job(scripts, keys, "missing", "ann")
        assert await queue.get_totals() == (0, 2)


# ---- a real worker process -----------------------------------------------------------------


@pytest.mark.timeout(90)
async def test_cancel_a_running_job_in_a_real_worker_process(
    redis_url: str,
    queue_name: str,
    redis: aioredis.Redis,
    tmp_path: Path,
    procs: list[WorkerProcess],
) -> None:
    ledger = tmp_path / "ledger.jsonl"
    async with Queue(queue_name, redis_url) as queue:
        long = await queue.add("long", {"sleep": 60}, attempts=5)
        # a long lock: only the subscription can deliver the cancel in time
        proc = WorkerProcess(
            "support.jobs:cancellable_job", queue_name, redis_url, ledger=ledger,
            concurrency=2, lock_duration=30_000,
        )  # fmt: skip
        procs.append(proc)
        await state_is(queue, long.id, JobState.ACTIVE, within=30)

        async def started() -> bool:
            return any(x["kind"] == "start" for x in read_ledger(ledger))

        await wait_until(started, within=30)
        result = await queue.cancel_job(long.id, by="ops@host")
        assert not result.done
        await state_is(queue, long.id, JobState.FAILED, within=10)
        job = await queue.get_job(long.id)
        assert job is not None and job.failed_reason == "cancelled by ops@host"
        assert job.attempts_made == 1
        (cancelled,) = await stream_events(redis, queue_name, "cancelled")
        (failed,) = await stream_events(redis, queue_name, "failed")
        assert _ms(failed) - _ms(cancelled) < 1000

        nxt = await queue.add("next", {"sleep": 0})
        await state_is(queue, nxt.id, JobState.COMPLETED, within=15)
        proc.signal(signal.SIGTERM)
        assert await asyncio.to_thread(proc.wait, 20) == 0
        kinds = [(x["job_id"], x["kind"]) for x in read_ledger(ledger)]
        assert kinds == [
            (long.id, "start"),
            (long.id, "cancelled"),
            (nxt.id, "start"),
            (nxt.id, "finish"),
        ]
        assert "cancelled by ops@host" in proc.output()
