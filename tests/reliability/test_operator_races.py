"""Operators acting while workers run (X3-X6) and mixed ordering (X8): every action is
state-guarded, so races end in exactly one outcome and the invariant checker stays clean."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest
from support.invariants import assert_invariants
from support.proxy import FaultProxy
from support.server import FaultServer
from support.streams import stream_events
from support.workers import running_worker, wait_until

from engine import Job, JobState, Queue, commands
from engine.errors import JobNotFound, JobStateError, LockLost
from engine.options import Retention

pytestmark = pytest.mark.timeout(90)

KEEP = Retention(-1, 0)


async def _take_one(queue: Queue, token: str) -> commands.TakenJob:
    taken = await commands.move_to_active(
        queue.scripts, queue.keys, commands.Lease(token, 30_000, "w", 1)
    )
    assert len(taken.jobs) == 1
    return taken.jobs[0]


async def _jitter() -> None:
    await asyncio.sleep(random.random() / 2000)


async def test_x3_retry_racing_completion_and_failure_1000_times(
    redis_url: str, queue_name: str
) -> None:
    """X3: the dashboard's retry races the worker finishing the job. When the worker completes
    it, the retry is always refused (naming the state); when the worker fails it for good, the
    retry wins only if it came after, and then the job is back in wait exactly once."""
    async with Queue(queue_name, redis_url) as worker, Queue(queue_name, redis_url) as operator:
        retried = refused = 0
        for i in range(1000):
            await worker.add("j", {"i": i})
            job = await _take_one(worker, f"t{i}")
            completes = i % 2 == 0

            async def finish(job: commands.TakenJob = job, completes: bool = completes) -> None:
                await _jitter()
                s, k = worker.scripts, worker.keys
                if completes:
                    await commands.complete_job(s, k, job.id, job.token, "1", KEEP)
                else:
                    await commands.fail_job(s, k, job.id, job.token, "x", "[]", -1, KEEP)

            async def retry(job_id: str = job.id) -> str | None:
                await _jitter()
                try:
                    await operator.retry_job(job_id)
                except JobStateError as exc:
                    return exc.state or "?"
                return None

            _, refusal = await asyncio.gather(finish(), retry())
            # refused atomically while active; the message reads the state afterwards, so it
            # may already say "failed"
            assert refusal in (None, "active", "completed", "failed")
            ok = refusal is None
            state = await worker.get_job_state(job.id)
            if ok:
                assert not completes and state is JobState.WAIT
                retried += 1
                await worker.remove_job(job.id)
            else:
                assert state is (JobState.COMPLETED if completes else JobState.FAILED)
                refused += 1
        assert retried + refused == 1000
        await assert_invariants(worker.client, queue_name, wait=0, active=0)


async def test_x4_two_dashboards_retry_the_same_failed_job(redis_url: str, queue_name: str) -> None:
    """X4: two operators retry one failed job at the same moment: one wins, the other is told
    it is no longer failed; the job is in wait once. 200 rounds."""
    async with Queue(queue_name, redis_url) as a, Queue(queue_name, redis_url) as b:
        for i in range(200):
            await a.add("j", {"i": i})
            job = await _take_one(a, f"t{i}")
            await commands.fail_job(a.scripts, a.keys, job.id, job.token, "x", "[]", -1, KEEP)
            outcomes = await asyncio.gather(
                a.retry_job(job.id), b.retry_job(job.id), return_exceptions=True
            )
            assert sorted(type(o).__name__ for o in outcomes) == ["JobStateError", "NoneType"]
            assert await a.client.lrange(a.keys.wait, 0, -1) == [job.id]
            await a.remove_job(job.id)
        await assert_invariants(a.client, queue_name, wait=0, failed=0)


async def test_x5_removing_an_active_job_is_refused_and_a_lapsed_one_leaves_nothing(
    fresh_server: FaultServer, queue_name: str
) -> None:
    """X5: discarding a job a worker holds is refused, naming why. Once its worker is cut off
    and the lock lapsed, removal is allowed; the worker's late progress, log line and result
    then write nothing: no orphan keys."""
    started = asyncio.Event()

    async def process(job: Job) -> Any:
        started.set()
        await asyncio.sleep(2.5)
        await job.log("late line")
        return "late result"

    with FaultProxy(fresh_server.port) as proxy:
        async with Queue(queue_name, fresh_server.url) as queue:
            job = await queue.add("j", {})
            async with running_worker(queue_name, process, proxy.url, lock_duration=500):
                await asyncio.wait_for(started.wait(), 20)
                with pytest.raises(JobStateError, match="being processed by a worker"):
                    await queue.remove_job(job.id)
                proxy.blackhole()
                await asyncio.sleep(1.0)  # the lock (0.5 s) lapses; nobody renews it
                assert await queue.remove_job(job.id) == "active"
                proxy.heal()
                await asyncio.sleep(2.5)  # the processor logs and returns
            await assert_invariants(queue.client, queue_name)
            assert await queue.client.exists(queue.keys.logs(job.id)) == 0


async def test_add_log_is_fenced_by_the_lock(redis_url: str, queue_name: str) -> None:
    """The script behind ``job.log()``: appends and trims under the right token only."""
    async with Queue(queue_name, redis_url) as queue:
        await queue.add("j", {})
        job = await _take_one(queue, "tok")
        s, k = queue.scripts, queue.keys
        for i in range(5):
            await commands.add_log(s, k, job.id, job.token, f"line {i}", 3)
        assert await queue.get_job_logs(job.id) == ["line 2", "line 3", "line 4"]
        with pytest.raises(LockLost):
            await commands.add_log(s, k, job.id, "other:1", "x", 3)
        await queue.client.delete(k.lock(job.id))
        with pytest.raises(LockLost):
            await commands.add_log(s, k, job.id, job.token, "x", 3)
        with pytest.raises(JobNotFound):
            await commands.add_log(s, k, "gone", job.token, "x", 3)
        assert await queue.client.exists(k.logs("gone")) == 0
        assert len(await queue.get_job_logs(job.id)) == 3


async def test_x6_pause_under_load(redis_url: str, queue_name: str) -> None:
    """X6: pause with 20 jobs active and 1,000 waiting: no new job starts while paused (also
    after the worker is replaced), the 20 finish; resume restarts work within 1 s + slack."""
    starts: list[tuple[str, float]] = []
    loop = asyncio.get_running_loop()

    async def process(job: Job) -> Any:
        starts.append((job.id, loop.time()))
        await asyncio.sleep(float(job.data["sleep"]))

    async with Queue(queue_name, redis_url) as queue:
        await queue.add_bulk([("slow", {"sleep": 1.0}) for _ in range(20)])
        await queue.add_bulk([("fast", {"sleep": 0}) for _ in range(1000)])
        async with running_worker(queue_name, process, redis_url, concurrency=20):
            await wait_until(lambda: _count(starts, 20))
            assert await queue.pause() is True
            paused_at = loop.time()
            await wait_until(lambda: _completed(queue, 20), within=20)
        async with running_worker(queue_name, process, redis_url, concurrency=20):
            await asyncio.sleep(1.0)  # a fresh worker does not take jobs from a paused queue
        assert [t for _, t in starts if t > paused_at] == []
        assert (await queue.get_counts("paused"))["paused"] == 1000
        async with running_worker(queue_name, process, redis_url, concurrency=20):
            assert await queue.resume() is True
            resumed_at = loop.time()
            await wait_until(lambda: _count(starts, 21), within=10)
            assert starts[20][1] - resumed_at < 1.0 + 1.0
            await wait_until(lambda: _completed(queue, 1020), within=40)
        await assert_invariants(queue.client, queue_name, completed=1020)


async def _count(starts: list[tuple[str, float]], n: int) -> bool:
    return len(starts) >= n


async def _completed(queue: Queue, n: int) -> bool:
    return (await queue.get_totals())[0] >= n


# X8's rate limit: at most X8_LIMIT jobs start per fixed window of X8_WINDOW ms (queue-wide),
# slow enough that the delayed jobs fall due while ready jobs still wait for their turn.
X8_LIMIT = 50
X8_WINDOW = 200
X8_DELAY = 1500


async def test_x8_priority_and_delay_together(redis_url: str, queue_name: str) -> None:
    """X8: 1,000 jobs, plain, prioritized (1-5) and delayed (some of them prioritized), added
    while paused, then run by a worker under a rate limit of 50 jobs per 200 ms. The take
    order (the ``active`` events) never passes over a better job that was ready: plain jobs
    first in FIFO order, then by priority, FIFO within one, a delayed job counting as ready
    from its due time on the Redis clock, and none started before it; no window of the
    limiter starts more than 50 jobs."""
    order: list[str] = []

    async def process(job: Job) -> Any:
        order.append(job.id)

    rng = random.Random(8)
    async with Queue(queue_name, redis_url) as queue:
        await queue.pause()
        items = []
        for i in range(1000):
            kind = rng.choice(["plain", "prio", "prio", "delayed"])
            options: dict[str, Any] = {}
            if kind == "prio" or (kind == "delayed" and rng.random() < 0.8):
                options["priority"] = rng.randint(1, 5)
            if kind == "delayed":
                options["delay"] = X8_DELAY
            items.append(("j", {"i": i}, options))
        jobs = await queue.add_bulk(items)
        limiter = {"max": X8_LIMIT, "duration": X8_WINDOW}
        async with running_worker(queue_name, process, redis_url, limiter=limiter):
            await queue.resume()
            await wait_until(lambda: _completed(queue, 1000), within=60)
        taken = [e["job_id"] for e in await stream_events(queue.client, queue_name, "active")]
        assert sorted(taken) == sorted(j.id for j in jobs)  # each job taken once
        assert order == taken  # and run in the order taken
        fields = ("timestamp", "delay", "priority", "processed_on")
        async with queue.client.pipeline(transaction=False) as pipe:
            for job_id in taken:
                pipe.hmget(queue.keys.job(job_id), list(fields))
            rows = [[int(v) for v in row] for row in await pipe.execute()]
        added_at = {j: row[0] for j, row in zip(taken, rows, strict=True)}
        delay = {j: row[1] for j, row in zip(taken, rows, strict=True)}
        taken_at = {j: row[3] for j, row in zip(taken, rows, strict=True)}
        # ready from the start (paused until then), or from the due time on the Redis clock
        ready_at = {j: added_at[j] + delay[j] if delay[j] else 0 for j in taken}
        rank = {j: (row[2], ready_at[j], int(j)) for j, row in zip(taken, rows, strict=True)}
        for job_id in taken:
            if delay[job_id]:
                assert taken_at[job_id] >= added_at[job_id] + X8_DELAY
        passed_over = [
            (later, first)
            for k, first in enumerate(taken)
            for later in taken[k + 1 :]
            if ready_at[later] <= taken_at[first] and rank[later] < rank[first]
        ]
        assert passed_over == [], passed_over[:5]
        # and the delayed jobs did compete: one was taken while a ready job still waited
        last_ready = max(k for k, j in enumerate(taken) if not delay[j])
        assert any(delay[j] for j in taken[:last_ready])
        plain = [j for j in taken if rank[j][:2] == (0, 0)]  # no priority, never delayed
        assert taken[: len(plain)] == plain == sorted(plain, key=int)  # first, in FIFO order
        _assert_rate_limited([taken_at[j] for j in taken])
        await assert_invariants(queue.client, queue_name, completed=1000)


def _assert_rate_limited(taken_at: list[int]) -> None:
    """Fixed windows as the limiter makes them: each starts with the first job taken after
    the previous one ended and lasts X8_WINDOW ms; none may hold more than X8_LIMIT starts."""
    windows: list[int] = []
    start = -X8_WINDOW
    for t in taken_at:
        if t >= start + X8_WINDOW:
            start = t
            windows.append(0)
        windows[-1] += 1
    assert max(windows) <= X8_LIMIT, windows
    assert len(windows) >= -(-len(taken_at) // X8_LIMIT)
