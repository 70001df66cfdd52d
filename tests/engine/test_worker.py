"""Worker behaviour in-process: processors, retries and backoff, errors, ordering, locks."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import redis.asyncio as aioredis
from support.streams import stream_events
from support.workers import running_worker, wait_until

from engine import Backoff, Job, JobState, Queue, Retry, UnrecoverableError
from engine.keys import QueueKeys

events_of = stream_events


async def finished(queue: Queue, n: int) -> None:
    async def done() -> bool:
        counts = await queue.get_counts("completed", "failed")
        return counts["completed"] + counts["failed"] >= n

    await wait_until(done, within=15)


async def test_async_processor_completes_with_progress_logs_and_value(
    redis_url: str, queue_name: str, redis: aioredis.Redis
) -> None:
    async def process(job: Job) -> Any:
        await job.update_progress({"stage": "render", "pct": 40})
        await job.log("rendered page 3")
        return {"sent": job.data["to"]}

    async with Queue(queue_name, redis_url) as queue:
        added = await queue.add("send", {"to": "a@b.c"})
        async with running_worker(queue_name, process, redis_url):
            await finished(queue, 1)
        job = await queue.get_job(added.id)
        assert job is not None
        assert job.state is JobState.COMPLETED
        assert job.returnvalue == {"sent": "a@b.c"}
        assert job.progress == {"stage": "render", "pct": 40}
        assert job.attempts_made == 1
        assert job.processed_on is not None and job.finished_on is not None
        assert await queue.get_job_logs(added.id) == ["rendered page 3"]
        assert await queue.get_totals() == (1, 0)
        (completed,) = await events_of(redis, queue_name, "completed")
        assert completed["job_id"] == added.id
        assert completed["returnvalue"] == '{"sent":"a@b.c"}'
        assert len(await events_of(redis, queue_name, "progress")) == 1
        assert await redis.exists(QueueKeys(queue_name).lock(added.id)) == 0


async def test_sync_processor_runs_in_a_thread_and_reports_progress(
    redis_url: str, queue_name: str
) -> None:
    import threading

    threads: list[str] = []

    def process(job: Job) -> Any:
        threads.append(threading.current_thread().name)
        job.update_progress_sync(99)
        job.log_sync("from a thread")
        return job.data * 2

    async with Queue(queue_name, redis_url) as queue:
        added = await queue.add("double", 21)
        async with running_worker(queue_name, process, redis_url):
            await finished(queue, 1)
        job = await queue.get_job(added.id)
        assert job is not None and job.returnvalue == 42 and job.progress == 99
        assert threads and threads[0] != threading.main_thread().name
        assert await queue.get_job_logs(added.id) == ["from a thread"]


async def test_exponential_backoff_spaces_attempts_on_the_server_clock(
    redis_url: str, queue_name: str, redis: aioredis.Redis
) -> None:
    """W8: attempts 4, base 200 ms, no jitter: starts >= 200, 400, 800 ms apart."""

    async def process(job: Job) -> Any:
        raise RuntimeError(f"attempt {job.attempts_started} fails")

    async with Queue(queue_name, redis_url) as queue:
        added = await queue.add("flaky", {}, attempts=4, backoff=Backoff.exponential(200))
        async with running_worker(queue_name, process, redis_url):
            await finished(queue, 1)
        job = await queue.get_job(added.id)
        assert job is not None
        assert job.state is JobState.FAILED
        assert job.attempts_made == 4
        assert job.failed_reason == "RuntimeError: attempt 4 fails"
        starts = [int(e["_id"].split("-")[0]) for e in await events_of(redis, queue_name, "active")]
        gaps = [b - a for a, b in itertools.pairwise(starts)]
        assert len(gaps) == 3
        for gap, minimum in zip(gaps, (200, 400, 800), strict=True):
            assert gap >= minimum - 5, gaps
        assert len(await events_of(redis, queue_name, "retrying")) == 3
        assert await queue.get_totals() == (0, 1)


async def test_unrecoverable_error_fails_at_once(redis_url: str, queue_name: str) -> None:
    """W7: UnrecoverableError on attempt 2 of 3 fails after exactly 2 attempts."""

    async def process(job: Job) -> Any:
        if job.attempts_started == 1:
            raise ValueError("transient")
        raise UnrecoverableError("card declined")

    async with Queue(queue_name, redis_url) as queue:
        added = await queue.add("charge", {}, attempts=3, backoff=Backoff.fixed(10))
        async with running_worker(queue_name, process, redis_url):
            await finished(queue, 1)
        job = await queue.get_job(added.id)
        assert job is not None and job.state is JobState.FAILED
        assert job.attempts_made == 2
        assert job.failed_reason == "UnrecoverableError: card declined"
        assert await queue.get_counts("delayed", "wait") == {"delayed": 0, "wait": 0}


async def test_processor_can_ask_for_a_retry_after_a_delay(
    redis_url: str, queue_name: str, redis: aioredis.Redis
) -> None:
    async def process(job: Job) -> Any:
        if job.attempts_started == 1:
            raise Retry(delay=300, reason="not yet")
        return "done"

    async with Queue(queue_name, redis_url) as queue:
        added = await queue.add("poll", {}, attempts=2)
        async with running_worker(queue_name, process, redis_url):
            await finished(queue, 1)
        job = await queue.get_job(added.id)
        assert job is not None and job.returnvalue == "done"
        starts = [int(e["_id"].split("-")[0]) for e in await events_of(redis, queue_name, "active")]
        assert starts[1] - starts[0] >= 295


async def test_odd_exceptions_fail_the_job_and_the_worker_goes_on(
    redis_url: str, queue_name: str
) -> None:
    """W6: SystemExit, KeyboardInterrupt, GeneratorExit, a processor's own CancelledError."""
    kinds: dict[str, type[BaseException]] = {
        "exit": SystemExit,
        "interrupt": KeyboardInterrupt,
        "genexit": GeneratorExit,
        "cancelled": asyncio.CancelledError,
    }

    async def process(job: Job) -> Any:
        if job.name in kinds:
            raise kinds[job.name]()
        return "fine"

    async with Queue(queue_name, redis_url) as queue:
        ids = {name: (await queue.add(name, {})).id for name in kinds}
        ok = await queue.add("ok", {})
        async with running_worker(queue_name, process, redis_url, concurrency=2):
            await finished(queue, len(kinds) + 1)
        for name, exc in kinds.items():
            job = await queue.get_job(ids[name])
            assert job is not None and job.state is JobState.FAILED, name
            assert job.failed_reason is not None and exc.__name__ in job.failed_reason
        job = await queue.get_job(ok.id)
        assert job is not None and job.state is JobState.COMPLETED


async def test_unserializable_return_value_fails_clearly(redis_url: str, queue_name: str) -> None:
    """B7: a return value that is not JSON fails the job with a serialization error."""

    async def process(job: Job) -> Any:
        return {"when": object()}

    async with Queue(queue_name, redis_url) as queue:
        added = await queue.add("bad-return", {}, attempts=3)
        async with running_worker(queue_name, process, redis_url):
            await finished(queue, 1)
        job = await queue.get_job(added.id)
        assert job is not None and job.state is JobState.FAILED
        assert job.attempts_made == 1  # not retried: it would fail the same way
        assert job.failed_reason is not None
        assert "return value" in job.failed_reason and "not JSON-serializable" in job.failed_reason


async def test_priorities_then_fifo_within_a_priority(redis_url: str, queue_name: str) -> None:
    """X8: jobs without a priority first, then priority 1, 2, ...; FIFO within each."""
    order: list[str] = []

    async def process(job: Job) -> Any:
        order.append(job.data)

    async with Queue(queue_name, redis_url) as queue:
        await queue.add_bulk(
            [
                ("j", "p3-a", {"priority": 3}),
                ("j", "p1-a", {"priority": 1}),
                ("j", "none-a"),
                ("j", "p3-b", {"priority": 3}),
                ("j", "p1-b", {"priority": 1}),
                ("j", "none-b"),
            ]
        )
        async with running_worker(queue_name, process, redis_url):
            await finished(queue, 6)
    assert order == ["none-a", "none-b", "p1-a", "p1-b", "p3-a", "p3-b"]


async def test_lifo_jobs_run_first(redis_url: str, queue_name: str) -> None:
    order: list[str] = []

    async def process(job: Job) -> Any:
        order.append(job.data)

    async with Queue(queue_name, redis_url) as queue:
        await queue.add("j", "first")
        await queue.add("j", "second")
        await queue.add("j", "urgent", lifo=True)
        async with running_worker(queue_name, process, redis_url):
            await finished(queue, 3)
    assert order == ["urgent", "first", "second"]


async def test_delayed_job_runs_at_its_time_and_not_before(redis_url: str, queue_name: str) -> None:
    async def process(job: Job) -> Any:
        return None

    async with Queue(queue_name, redis_url) as queue:
        async with running_worker(queue_name, process, redis_url, block_timeout=5.0):
            added = await queue.add("later", {}, delay=700)
            assert (await queue.get_counts("delayed"))["delayed"] == 1
            await finished(queue, 1)
        job = await queue.get_job(added.id)
        assert job is not None and job.processed_on is not None
        waited = job.processed_on - job.timestamp
        assert 700 <= waited < 700 + 1000, waited  # woken by the delay, not the block timeout


async def test_paused_queue_is_not_processed_until_resumed(redis_url: str, queue_name: str) -> None:
    """X6 (in part): no job becomes active while paused; resume restarts processing."""

    async def process(job: Job) -> Any:
        return None

    async with Queue(queue_name, redis_url) as queue:
        await queue.pause()
        await queue.add_bulk([("j", i) for i in range(5)])
        async with running_worker(queue_name, process, redis_url):
            await asyncio.sleep(0.5)
            counts = await queue.get_counts()
            assert counts["paused"] == 5 and counts["active"] == 0 and counts["completed"] == 0
            await queue.resume()
            await finished(queue, 5)


async def test_locks_are_renewed_for_long_jobs(
    redis_url: str, queue_name: str, redis: aioredis.Redis
) -> None:
    """A job running 3x the lock duration is never seen as stalled (async and thread)."""

    async def slow_async(job: Job) -> Any:
        await asyncio.sleep(1.5)

    def slow_thread(job: Job) -> Any:
        import time

        time.sleep(1.5)  # W5: blocks its thread, not the loop, so renewal goes on

    for process in (slow_async, slow_thread):
        name = f"{queue_name}-{process.__name__}"
        async with Queue(name, redis_url) as queue:
            await queue.add("slow", {})
            async with running_worker(
                name, process, redis_url, lock_duration=500, stalled_interval=200
            ):
                await finished(queue, 1)
            assert await events_of(redis, name, "stalled") == []
            assert len(await events_of(redis, name, "active")) == 1
            assert await queue.get_totals() == (1, 0)


async def test_worker_that_lost_its_lock_cannot_complete_the_job(
    redis_url: str, queue_name: str, redis: aioredis.Redis
) -> None:
    """C4 fencing: once the lock is gone, the worker's result is discarded, not recorded."""
    started = asyncio.Event()
    release = asyncio.Event()

    async def process(job: Job) -> Any:
        started.set()
        await release.wait()
        return "late result"

    async with Queue(queue_name, redis_url) as queue:
        added = await queue.add("j", {})
        async with running_worker(
            queue_name, process, redis_url, lock_duration=60_000, stalled_interval=60_000
        ):
            await asyncio.wait_for(started.wait(), 5)
            await redis.set(QueueKeys(queue_name).lock(added.id), "someone-else")
            release.set()
            await asyncio.sleep(0.3)
        job = await queue.get_job(added.id)
        assert job is not None
        assert job.state is JobState.ACTIVE  # still held under the other token
        assert job.returnvalue is None
        assert await queue.get_totals() == (0, 0)


async def test_corrupt_job_hash_is_failed_and_the_worker_goes_on(
    redis_url: str, queue_name: str, redis: aioredis.Redis
) -> None:
    """B4: a hash that is not a job fails with 'corrupt job data' instead of crashing."""
    keys = QueueKeys(queue_name)

    async def process(job: Job) -> Any:
        return "ok"

    async with Queue(queue_name, redis_url) as queue:
        await queue.add("first", {})
        await redis.hset(keys.job("bad"), mapping={"name": "x", "data": "{not json"})
        await redis.lpush(keys.wait, "bad")
        after = await queue.add("after", {})
        async with running_worker(queue_name, process, redis_url):
            await finished(queue, 3)
        assert await queue.get_job_state("bad") is JobState.FAILED
        reason = str(await redis.hget(keys.job("bad"), "failed_reason"))
        assert reason is not None and reason.startswith("corrupt job data")
        job = await queue.get_job(after.id)
        assert job is not None and job.state is JobState.COMPLETED


async def test_retention_of_completed_and_failed_jobs(redis_url: str, queue_name: str) -> None:
    async def process(job: Job) -> Any:
        if job.data == "fail":
            raise ValueError("no")

    async with Queue(queue_name, redis_url) as queue:
        gone = await queue.add("j", "ok", remove_on_complete=True)
        kept = [await queue.add("j", "ok", remove_on_complete=2) for _ in range(4)]
        failed = await queue.add("j", "fail", remove_on_fail=True)
        async with running_worker(queue_name, process, redis_url):
            await wait_until(lambda: _totals_reach(queue, 6), within=10)
        assert await queue.get_job(gone.id) is None
        assert await queue.get_job(failed.id) is None
        completed = await queue.get_job_ids("completed", 0, -1)
        assert sorted(completed) == sorted(j.id for j in kept[-2:])
        assert await queue.get_totals() == (5, 1)  # counters count every job, kept or not


async def _totals_reach(queue: Queue, n: int) -> bool:
    completed, failed = await queue.get_totals()
    return completed + failed >= n


async def test_concurrency_runs_jobs_at_the_same_time(redis_url: str, queue_name: str) -> None:
    in_flight = 0
    peak = 0

    async def process(job: Job) -> Any:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.3)
        in_flight -= 1

    async with Queue(queue_name, redis_url) as queue:
        await queue.add_bulk([("j", i) for i in range(20)])
        async with running_worker(queue_name, process, redis_url, concurrency=10):
            await finished(queue, 20)
    assert peak == 10


async def test_jobs_that_finish_together_are_recorded_in_shared_calls(
    redis_url: str, queue_name: str, redis: aioredis.Redis
) -> None:
    """Group commit: completions that pile up while a call is in flight go out in one call, so
    a busy worker sends far fewer scripts than it finishes jobs; each is still recorded once."""
    done: list[str] = []

    async def process(job: Job) -> Any:
        done.append(job.id)
        return job.data

    async with Queue(queue_name, redis_url) as queue:
        await queue.add_bulk([("j", i) for i in range(2_000)])
        before = _calls(await redis.info("commandstats"), "evalsha")
        async with running_worker(queue_name, process, redis_url, concurrency=50):
            await finished(queue, 2_000)
        scripts = _calls(await redis.info("commandstats"), "evalsha") - before
        assert sorted(done, key=int) == [str(i) for i in range(1, 2_001)]
        assert await queue.get_counts("completed", "active", "wait") == {
            "completed": 2_000,
            "active": 0,
            "wait": 0,
        }
        jobs = await queue.get_jobs("completed", 0, 9)
        assert all(job.returnvalue == int(job.id) - 1 for job in jobs)
        # one script per job would be 2,000 (plus renewals and stall checks)
        assert scripts < 1_000


async def test_worker_waits_for_a_job_added_later_without_polling(
    redis_url: str, queue_name: str, redis: aioredis.Redis
) -> None:
    """An idle worker blocks on the marker and wakes as soon as a job is added."""
    seen = asyncio.Event()

    async def process(job: Job) -> Any:
        seen.set()

    async with (
        Queue(queue_name, redis_url) as queue,
        running_worker(queue_name, process, redis_url, block_timeout=10.0),
    ):
        await asyncio.sleep(0.3)
        before = await redis.info("commandstats")
        await asyncio.sleep(1.0)
        after = await redis.info("commandstats")
        assert _calls(after, "evalsha") - _calls(before, "evalsha") <= 2  # idle: no polling
        await queue.add("now", {})
        await asyncio.wait_for(seen.wait(), 2)


def _calls(stats: dict[str, Any], command: str) -> int:
    entry = stats.get(f"cmdstat_{command}")
    return int(entry["calls"]) if entry else 0


async def test_the_same_job_id_and_attempt_never_get_the_same_lock_token(
    redis_url: str, queue_name: str, redis: aioredis.Redis
) -> None:
    """After a server loses its data it hands out the same ids and attempt numbers again (R1):
    the worker's tokens must still differ, or a late result could complete the new job."""
    keys = QueueKeys(queue_name)
    tokens: list[str] = []

    async def process(job: Job) -> None:
        tokens.append(str(await redis.get(keys.lock(job.id))))

    async with (
        Queue(queue_name, redis_url) as queue,
        running_worker(queue_name, process, redis_url),
    ):
        await queue.add("x", {}, job_id="same")
        await wait_until(lambda: _done(tokens, 1))
        await queue.remove_job("same")  # as if the server had lost it
        await queue.add("x", {}, job_id="same")
        await wait_until(lambda: _done(tokens, 2))
    assert tokens[0] != tokens[1]
    assert all(t.endswith(":1") for t in tokens)  # both were attempt 1


async def _done(tokens: list[str], n: int) -> bool:
    return len(tokens) >= n
