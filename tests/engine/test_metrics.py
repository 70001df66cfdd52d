"""Per-minute metrics: exact counts after a real workload, latency histograms and percentiles,
the bounded window (each minute's hash expires), and the buckets Lua and Python agree on."""

from __future__ import annotations

import asyncio
from importlib.resources import files
from typing import Any

import pytest
import redis.asyncio as aioredis
from support.workers import running_worker, wait_until

from engine import InvalidJobOptions, Job, Queue, Worker, commands
from engine.commands import Lease
from engine.keys import QueueKeys
from engine.metrics import (
    DEFAULT_WINDOW_MS,
    MINUTE_MS,
    Latency,
    bucket_of,
    bucket_range,
)
from engine.options import Retention
from engine.scripts import ScriptRegistry

DURATIONS = [0, 1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 99, 100, 127, 128, 1000, 1023, 1024, 86_400_000]


@pytest.fixture
def keys(queue_name: str) -> QueueKeys:
    return QueueKeys(queue_name)


@pytest.fixture
def scripts(redis: aioredis.Redis) -> ScriptRegistry:
    return ScriptRegistry(redis)


async def server_ms(redis: aioredis.Redis) -> int:
    seconds, micros = await redis.time()
    return int(seconds) * 1000 + int(micros) // 1000


async def take_one(scripts: ScriptRegistry, keys: QueueKeys) -> commands.TakenJob:
    (job,) = (await commands.move_to_active(scripts, keys, Lease("tok", 30_000, "w1", 1))).jobs
    return job


# ---- buckets -------------------------------------------------------------------------------


async def test_lua_and_python_put_a_duration_in_the_same_bucket(redis: aioredis.Redis) -> None:
    common = (files("engine.scripts") / "_common.lua").read_text(encoding="utf-8")
    probe = common + "\nreturn latency_bucket(tonumber(ARGV[1]))"
    for ms in [*DURATIONS, *range(0, 300)]:
        assert await redis.eval(probe, 0, ms) == bucket_of(ms), ms


def test_a_bucket_holds_its_durations_and_is_at_most_a_quarter_wide() -> None:
    for ms in [*DURATIONS, *range(1, 5000)]:
        low, high = bucket_range(bucket_of(ms))
        assert low <= ms <= high
        assert high - low <= low / 4
        assert bucket_of(low) == bucket_of(high) == bucket_of(ms)


def test_percentiles_from_a_histogram() -> None:
    # 90 jobs of 100 ms and 10 of 1000 ms
    latency = Latency({bucket_of(100): 90, bucket_of(1000): 10}, 90 * 100 + 10 * 1000)
    assert latency.count == 100
    assert latency.mean == 190
    p50, p90, p99 = latency.p50, latency.p90, latency.p99
    assert p50 is not None and p90 is not None and p99 is not None
    assert bucket_of(int(p50)) == bucket_of(100)
    assert bucket_of(int(p90)) == bucket_of(100)
    assert bucket_of(int(p99)) == bucket_of(1000)
    assert Latency().p50 is None and Latency().mean is None
    with pytest.raises(InvalidJobOptions, match="q=0"):
        latency.percentile(0)
    merged = Latency.merge([latency, Latency({bucket_of(100): 1}, 100)])
    assert merged.count == 101 and merged.total_ms == 19_100


# ---- the scripts record ----------------------------------------------------------------------


async def test_finishing_a_job_records_its_minute_with_times_and_expiry(
    redis: aioredis.Redis, scripts: ScriptRegistry, keys: QueueKeys, queue_name: str
) -> None:
    async with Queue(queue_name, redis) as queue:
        await queue.add("a")
        await queue.add("b")
    now = await server_ms(redis)
    first = await take_one(scripts, keys)
    # as if the job had waited 5 s after it was added and then run for 1 s
    await redis.hset(
        keys.job(first.id), mapping={"timestamp": now - 6_000, "processed_on": now - 1_000}
    )
    await commands.complete_job(scripts, keys, first.id, first.token, "1", Retention(0, 0))
    second = await take_one(scripts, keys)
    await commands.fail_job(
        scripts, keys, second.id, second.token, "x", "[]", -1, Retention(), metrics_window=120_000
    )
    done = await server_ms(redis)
    async with Queue(queue_name, redis) as queue:
        completed = await queue.get_metrics("completed", now, done)
        failed = await queue.get_metrics("failed", now, done)
    assert completed.count == 1 and failed.count == 1
    (point,) = [p for p in completed.points if p.count]
    assert point.minute % MINUTE_MS == 0 and point.minute <= done
    assert point.processing.count == 1 and point.wait.count == 1
    assert 1_000 <= point.processing.total_ms < 1_000 + (done - now) + 5
    assert 5_000 <= point.wait.total_ms <= 5_000 + (done - now) + 5
    assert bucket_of(point.processing.total_ms) in point.processing.buckets
    # kept the window after the minute ends, whatever the retention of the job itself
    expires: Any = await redis.pexpiretime(keys.metrics("completed", point.minute))
    assert expires == point.minute + MINUTE_MS + DEFAULT_WINDOW_MS
    (fpoint,) = [p for p in failed.points if p.count]
    expires = await redis.pexpiretime(keys.metrics("failed", fpoint.minute))
    assert expires == fpoint.minute + MINUTE_MS + 120_000


async def test_a_retried_attempt_is_not_counted_and_window_zero_records_nothing(
    redis: aioredis.Redis, scripts: ScriptRegistry, keys: QueueKeys, queue_name: str
) -> None:
    async with Queue(queue_name, redis) as queue:
        await queue.add("a", attempts=2)
        job = await take_one(scripts, keys)
        await commands.fail_job(scripts, keys, job.id, job.token, "x", "[]", 0, Retention())
        job = await take_one(scripts, keys)
        await commands.complete_job(
            scripts, keys, job.id, job.token, "1", Retention(), metrics_window=0
        )
        assert (await queue.get_metrics("failed")).count == 0
        assert (await queue.get_metrics("completed")).count == 0
        assert [k async for k in redis.scan_iter(match=keys.metrics_prefix + "*")] == []


async def test_a_job_failed_for_stalling_is_counted_as_failed(
    redis: aioredis.Redis, scripts: ScriptRegistry, keys: QueueKeys, queue_name: str
) -> None:
    async with Queue(queue_name, redis) as queue:
        await queue.add("a")
        await commands.move_to_active(scripts, keys, Lease("tok", 100, "w1", 1))
        await commands.recover_stalled(scripts, keys, 0, 10)  # marks it
        await asyncio.sleep(0.2)  # its lock expires
        _recovered, failed = await commands.recover_stalled(scripts, keys, 0, 10)
        assert failed == ["1"]
        metrics = await queue.get_metrics("failed")
        assert metrics.count == 1 and metrics.processing.count == 1
        assert await queue.get_totals() == (0, 1)


# ---- a real workload -----------------------------------------------------------------------


async def flaky(job: Job) -> Any:
    await asyncio.sleep(0.05)
    if job.data == "fail" or (job.data == "once" and job.attempts_made == 0):
        raise RuntimeError("boom")
    return job.data


async def test_counts_are_exact_after_a_workload(
    redis: aioredis.Redis, queue_name: str, redis_url: str
) -> None:
    async with Queue(queue_name, redis) as queue:
        items: list[tuple[str, Any, dict[str, Any]]] = [("ok", "ok", {}) for _ in range(30)]
        items += [("fail", "fail", {"attempts": 1}) for _ in range(10)]
        items += [("once", "once", {"attempts": 2}) for _ in range(5)]
        items += [("gone", "ok", {"remove_on_complete": True}) for _ in range(5)]
        await queue.add_bulk(items)
        async with running_worker(queue_name, flaky, redis_url, concurrency=8):

            async def finished() -> bool:
                return sum(await queue.get_totals()) == 50

            await wait_until(finished, within=30)
        completed = await queue.get_metrics("completed")
        failed = await queue.get_metrics("failed")
        assert (completed.count, failed.count) == (40, 10) == await queue.get_totals()
        assert len(completed.points) == 60
        assert [p.minute for p in completed.points] == sorted(p.minute for p in completed.points)
        processing = completed.processing
        assert processing.count == 40
        p50, p99 = processing.p50, processing.p99
        assert p50 is not None and p99 is not None
        assert 50 <= p50 <= p99 < 5_000  # every job slept 50 ms
        assert completed.wait.count == 40 and completed.wait.p50 is not None


# ---- reading -------------------------------------------------------------------------------


async def test_get_metrics_refuses_bad_ranges_and_kinds(
    queue_name: str, redis: aioredis.Redis
) -> None:
    async with Queue(queue_name, redis) as queue:
        with pytest.raises(InvalidJobOptions, match="kind='done'"):
            await queue.get_metrics("done")
        with pytest.raises(InvalidJobOptions, match="is after end"):
            await queue.get_metrics("completed", 10 * MINUTE_MS, 5 * MINUTE_MS)
        with pytest.raises(InvalidJobOptions, match="at most"):
            await queue.get_metrics("completed", 0, 30 * 24 * 60 * MINUTE_MS)
        with pytest.raises(InvalidJobOptions, match="start=-1"):
            await queue.get_metrics("completed", -1, 0)
        one = await queue.get_metrics("completed", 5 * MINUTE_MS + 1, 5 * MINUTE_MS + 2)
        assert [p.minute for p in one.points] == [5 * MINUTE_MS] and one.count == 0


def test_bad_metrics_windows_are_refused() -> None:
    async def noop(job: Job) -> None:
        return None

    for window in (-1, 1.5, 10**12, "1d"):
        with pytest.raises(InvalidJobOptions, match="metrics_window"):
            Worker("q", noop, "redis://127.0.0.1:1/0", metrics_window=window)  # type: ignore[arg-type]
