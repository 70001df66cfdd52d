"""Rate limiting: the limiter inside the take step, manual limits, RateLimitError from a
processor, and the limit holding across four real worker processes (RL1, RL2)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
import redis.asyncio as aioredis
from support.streams import stream_events
from support.workers import WorkerProcess, running_worker, wait_until

from engine import (
    InvalidJobOptions,
    Job,
    JobState,
    Queue,
    RateLimit,
    RateLimitError,
    Worker,
    commands,
)
from engine.commands import Lease
from engine.keys import QueueKeys
from engine.options import Retention
from engine.rate_limit import MANUAL_LIMIT
from engine.scripts import ScriptRegistry

LOCK_MS = 30_000


@pytest.fixture
def keys(queue_name: str) -> QueueKeys:
    return QueueKeys(queue_name)


@pytest.fixture
def scripts(redis: aioredis.Redis) -> ScriptRegistry:
    return ScriptRegistry(redis)


def lease(count: int, limit_max: int = 0, limit_ms: int = 0, worker: str = "w1") -> Lease:
    return Lease(f"tok-{worker}", LOCK_MS, worker, count, limit_max, limit_ms)


async def add_jobs(queue_name: str, redis: aioredis.Redis, n: int) -> list[str]:
    async with Queue(queue_name, redis) as queue:
        return [j.id for j in await queue.add_bulk([("j", i) for i in range(n)])]


async def evalsha_calls(redis: aioredis.Redis) -> int:
    stats: dict[str, Any] = await redis.info("commandstats")
    return int(stats.get("cmdstat_evalsha", {}).get("calls", 0))


# ---- the limiter inside the take step ------------------------------------------------------


async def test_the_limiter_counts_jobs_taken_by_every_worker_in_one_window(
    redis: aioredis.Redis, scripts: ScriptRegistry, keys: QueueKeys, queue_name: str
) -> None:
    await add_jobs(queue_name, redis, 10)
    first = await commands.move_to_active(scripts, keys, lease(3, 5, 60_000, "w1"))
    assert len(first.jobs) == 3 and first.rate_limit_ms == 0
    await redis.delete(keys.marker)  # as if an idle worker had popped it
    second = await commands.move_to_active(scripts, keys, lease(10, 5, 60_000, "w2"))
    assert len(second.jobs) == 2  # the window's room, not the 10 asked for
    assert await redis.get(keys.limiter) == "5"
    assert 59_000 < await redis.pttl(keys.limiter) <= 60_000  # the window started at the first
    third = await commands.move_to_active(scripts, keys, lease(10, 5, 60_000, "w3"))
    assert third.jobs == []
    assert 59_000 < third.rate_limit_ms <= 60_000
    assert await redis.llen(keys.wait) == 5  # limited jobs stay waiting
    # a full window does not wake idle workers for jobs they could not take
    assert await redis.zcard(keys.marker) == 0


async def test_a_new_window_starts_when_the_last_one_expires(
    redis: aioredis.Redis, scripts: ScriptRegistry, keys: QueueKeys, queue_name: str
) -> None:
    await add_jobs(queue_name, redis, 5)
    assert len((await commands.move_to_active(scripts, keys, lease(5, 2, 300))).jobs) == 2
    limited = await commands.move_to_active(scripts, keys, lease(5, 2, 300))
    assert limited.jobs == [] and 0 < limited.rate_limit_ms <= 300
    await asyncio.sleep(limited.rate_limit_ms / 1000 + 0.05)
    again = await commands.move_to_active(scripts, keys, lease(5, 2, 300))
    assert len(again.jobs) == 2 and again.rate_limit_ms == 0


async def test_finishing_a_job_takes_the_next_one_only_within_the_limit(
    redis: aioredis.Redis, scripts: ScriptRegistry, keys: QueueKeys, queue_name: str
) -> None:
    await add_jobs(queue_name, redis, 3)
    (job,) = (await commands.move_to_active(scripts, keys, lease(1, 2, 60_000))).jobs
    nxt = await commands.complete_job(
        scripts, keys, job.id, job.token, "1", Retention(), lease(1, 2, 60_000)
    )
    assert len(nxt.jobs) == 1  # the window's second job
    (job,) = nxt.jobs
    nxt = await commands.fail_job(
        scripts, keys, job.id, job.token, "x", "[]", -1, Retention(), lease(1, 2, 60_000)
    )
    assert nxt.jobs == [] and nxt.rate_limit_ms > 0
    assert await redis.llen(keys.wait) == 1


async def test_a_limiter_that_lost_its_ttl_does_not_block_for_ever(
    redis: aioredis.Redis, scripts: ScriptRegistry, keys: QueueKeys, queue_name: str
) -> None:
    await add_jobs(queue_name, redis, 2)
    await redis.set(keys.limiter, 100)  # e.g. written by hand, no TTL
    taken = await commands.move_to_active(scripts, keys, lease(2, 10, 1_000))
    assert len(taken.jobs) == 2
    assert await redis.get(keys.limiter) == "2"
    assert 0 < await redis.pttl(keys.limiter) <= 1_000


async def test_without_a_limit_nothing_is_counted(
    redis: aioredis.Redis, scripts: ScriptRegistry, keys: QueueKeys, queue_name: str
) -> None:
    await add_jobs(queue_name, redis, 3)
    taken = await commands.move_to_active(scripts, keys, lease(3))
    assert len(taken.jobs) == 3 and taken.rate_limit_ms == 0
    assert await redis.exists(keys.limiter) == 0


# ---- manual limits -------------------------------------------------------------------------


async def test_a_manual_limit_stops_every_worker_and_is_reported(
    redis: aioredis.Redis, scripts: ScriptRegistry, keys: QueueKeys, queue_name: str
) -> None:
    await add_jobs(queue_name, redis, 2)
    async with Queue(queue_name, redis) as queue:
        assert await queue.get_rate_limit_ttl() == 0
        await queue.rate_limit(5_000)
        assert 4_000 < await queue.get_rate_limit_ttl() <= 5_000
        assert await redis.get(keys.limiter) == str(MANUAL_LIMIT)
        for limit in ((0, 0), (1_000, 60_000)):  # workers with and without a limit of their own
            taken = await commands.move_to_active(scripts, keys, lease(2, *limit))
            assert taken.jobs == [] and 4_000 < taken.rate_limit_ms <= 5_000
        assert [e["ms"] for e in await stream_events(redis, queue_name, "rate-limited")] == ["5000"]
        await redis.delete(keys.limiter)
        assert len((await commands.move_to_active(scripts, keys, lease(2))).jobs) == 2


async def test_get_rate_limit_ttl_with_the_workers_limit(
    redis: aioredis.Redis, scripts: ScriptRegistry, keys: QueueKeys, queue_name: str
) -> None:
    await add_jobs(queue_name, redis, 3)
    await commands.move_to_active(scripts, keys, lease(3, 3, 60_000))
    async with Queue(queue_name, redis) as queue:
        assert await queue.get_rate_limit_ttl() == 0  # a counting window alone is no wait
        assert await queue.get_rate_limit_ttl(max_jobs=4) == 0
        assert 59_000 < await queue.get_rate_limit_ttl(max_jobs=3) <= 60_000
        with pytest.raises(InvalidJobOptions, match="max_jobs"):
            await queue.get_rate_limit_ttl(max_jobs=0)


@pytest.mark.parametrize(
    ("limiter", "match"),
    [
        ({"max": 0, "duration": 1000}, "limiter max=0"),
        ({"max": 5}, "expected {'max': jobs, 'duration': ms}"),
        ({"max": 5, "duration": 0}, "limiter duration=0"),
        ({"max": 5, "duration": 1.5}, "limiter duration=1.5"),
        ({"max": True, "duration": 10}, "limiter max=True"),
        ("10/s", "limiter='10/s'"),
    ],
)
def test_bad_limiters_are_refused_with_the_reason(limiter: Any, match: str) -> None:
    async def noop(job: Job) -> None:
        return None

    with pytest.raises(InvalidJobOptions, match=match):
        Worker("q", noop, "redis://127.0.0.1:1/0", limiter=limiter)


async def test_bad_manual_limits_are_refused(queue_name: str, redis: aioredis.Redis) -> None:
    async with Queue(queue_name, redis) as queue:
        for ms in (0, -5, 2.5, None):
            with pytest.raises(InvalidJobOptions, match="rate limit ms"):
                await queue.rate_limit(ms)  # type: ignore[arg-type]


# ---- workers -------------------------------------------------------------------------------


async def test_rate_limit_error_puts_the_job_back_without_using_an_attempt(
    redis: aioredis.Redis, queue_name: str, redis_url: str
) -> None:
    """The processor hits a "429": it limits the queue for 1 s and raises RateLimitError.
    The job goes back to the front of wait, keeps its attempts, and no job starts until the
    limit ends; then it completes."""
    calls: list[tuple[str, int]] = []
    worker_ref: list[Worker] = []

    async def process(job: Job) -> str:
        calls.append((job.id, job.attempts_made))
        if len(calls) == 1:
            await worker_ref[0].rate_limit(1_000)
            raise RateLimitError()
        return "sent"

    async with Queue(queue_name, redis) as queue:
        first = await queue.add("call", attempts=1)
        second = await queue.add("call", attempts=1)
        async with running_worker(queue_name, process, redis_url) as worker:
            worker_ref.append(worker)

            async def both_done() -> bool:
                return (await queue.get_counts("completed"))["completed"] == 2

            await wait_until(both_done, within=15)
        # the limited job ran again first (front of wait), with no attempt used
        assert calls == [(first.id, 0), (first.id, 0), (second.id, 0)]
        retried = await queue.get_job(first.id)
        assert retried is not None and retried.state is JobState.COMPLETED
        assert retried.attempts_made == 1 and retried.failed_reason is None
        assert retried.attempts_started == 2  # both starts count, so lock tokens never repeat
        limited_at = int((await stream_events(redis, queue_name, "rate-limited"))[0]["_id"][:13])
        assert retried.processed_on is not None and retried.processed_on >= limited_at + 1_000
        waiting = await stream_events(redis, queue_name, "waiting")
        assert [e.get("reason") for e in waiting if e.get("prev") == "active"] == ["rate limited"]
        assert await stream_events(redis, queue_name, "failed") == []


async def test_a_limited_worker_sleeps_out_the_window_instead_of_polling(
    redis: aioredis.Redis, queue_name: str, redis_url: str
) -> None:
    await add_jobs(queue_name, redis, 3)

    async def process(job: Job) -> None:
        return None

    async with (
        Queue(queue_name, redis) as queue,
        running_worker(
            queue_name, process, redis_url, concurrency=5, limiter={"max": 1, "duration": 3_000}
        ),
    ):

        async def one_done() -> bool:
            return (await queue.get_counts("completed"))["completed"] == 1

        await wait_until(one_done, within=10)
        before = await evalsha_calls(redis)
        await asyncio.sleep(1.5)
        assert await evalsha_calls(redis) - before <= 3  # one fetch per window, not a poll
        counts = await queue.get_counts("completed", "wait", "failed")
        assert counts == {"completed": 1, "wait": 2, "failed": 0}


async def test_close_returns_quickly_while_rate_limited(
    redis: aioredis.Redis, queue_name: str, redis_url: str
) -> None:
    """RL2: close() on a worker limited for 60 s returns within 1 s; the jobs stay waiting."""
    await add_jobs(queue_name, redis, 3)

    async def process(job: Job) -> None:
        return None

    worker = Worker(queue_name, process, redis_url, limiter=RateLimit(1, 60_000))
    task = asyncio.create_task(worker.run())
    async with Queue(queue_name, redis) as queue:

        async def limited() -> bool:
            counts = await queue.get_counts("completed")
            return counts["completed"] == 1 and await queue.get_rate_limit_ttl(1) > 0

        await wait_until(limited, within=10)
        await asyncio.sleep(0.2)  # the worker is asleep in the window now
        started = time.monotonic()
        await worker.close()
        await asyncio.wait_for(task, 5)
        assert time.monotonic() - started < 1.0
        assert await queue.get_counts("wait", "failed") == {"wait": 2, "failed": 0}


# ---- four worker processes (RL1) -----------------------------------------------------------


def fixed_windows(starts: list[int], duration: int) -> list[list[int]]:
    """Split sorted start times into the limiter's windows: a window begins with the first
    start after the previous window ended and lasts ``duration`` ms (the key's TTL). Start
    times are whole ms of the server clock, the TTL runs from a finer instant: a take in the
    ms the key expires can already be the next window's, so a window is ``[first, first +
    duration)``."""
    windows: list[list[int]] = []
    for t in sorted(starts):
        if windows and t < windows[-1][0] + duration:
            windows[-1].append(t)
        else:
            windows.append([t])
    return windows


@pytest.mark.timeout(120)
async def test_the_limit_holds_across_four_worker_processes(
    redis_url: str, queue_name: str, redis: aioredis.Redis, procs: list[WorkerProcess]
) -> None:
    """RL1: 10 jobs per 1 s shared by 4 worker processes of concurrency 20, 200 jobs. Job
    starts (server clock) fall in fixed windows of at most 10; every job completes, none
    fails; the measured rate is close to the limit."""
    n, limit, window = 200, 10, 1_000
    await add_jobs(queue_name, redis, n)
    for _ in range(4):
        procs.append(
            WorkerProcess(
                "support.jobs:noop",
                queue_name,
                redis_url,
                concurrency=20,
                lock_duration=30_000,
                extra_args=("--limit-max", str(limit), "--limit-duration", str(window)),
            )
        )
    async with Queue(queue_name, redis) as queue:

        async def all_done() -> bool:
            return (await queue.get_counts("completed"))["completed"] == n

        await wait_until(all_done, within=90, interval=0.5)
        jobs = await queue.get_jobs("completed", 0, -1)
        assert await queue.get_counts("failed", "wait") == {"failed": 0, "wait": 0}
    starts = sorted(j.processed_on for j in jobs if j.processed_on is not None)
    assert len(starts) == n
    windows = fixed_windows(starts, window)
    assert max(len(w) for w in windows) <= limit, [len(w) for w in windows]
    assert len(windows) >= n // limit
    elapsed = starts[-1] - starts[0]
    assert elapsed >= (n // limit - 1) * window  # never faster than the limit
    assert elapsed <= 2 * (n // limit) * window + 5_000  # and not starved
    pids = {j.worker.split(":")[1] for j in jobs if j.worker}
    assert len(pids) >= 2  # the windows were shared by several processes


# ---- corral worker flags -------------------------------------------------------------------


def test_worker_flags_build_the_limiter() -> None:
    from corral.cli import build_parser
    from engine.cli_worker import _worker_options

    def options(*flags: str) -> dict[str, Any]:
        args = build_parser().parse_args(["worker", "support.jobs:noop", "--queue", "q", *flags])
        return _worker_options(args)

    assert options("--limit-max", "10", "--limit-duration", "1000")["limiter"] == {
        "max": 10,
        "duration": 1000,
    }
    assert options("--metrics-window", "0")["metrics_window"] == 0
    assert "limiter" not in options()
    with pytest.raises(InvalidJobOptions, match="go together"):
        options("--limit-max", "10")
