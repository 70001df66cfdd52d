"""The invariant checker itself: clean queues pass, each kind of damage is named."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis
from support.invariants import assert_invariants, check_invariants
from support.populate import every_state

from engine import Queue
from engine.keys import QueueKeys


async def _queue_in_every_state(url: str, name: str) -> Queue:
    queue = Queue(name, url)
    await every_state(queue)
    return queue


async def test_a_queue_in_every_state_is_clean(
    redis_url: str, queue_name: str, redis: aioredis.Redis
) -> None:
    queue = await _queue_in_every_state(redis_url, queue_name)
    try:
        report = await assert_invariants(
            redis, queue_name, wait=4, prioritized=1, completed=2, failed=2, active=1, delayed=1
        )
        assert report.total == 11
    finally:
        await queue.close()


async def test_an_empty_queue_is_clean(redis: aioredis.Redis, queue_name: str) -> None:
    report = await assert_invariants(redis, queue_name)
    assert report.total == 0


@pytest.mark.parametrize(
    ("damage", "rule"),
    [
        ("twice", "in more than one state"),
        ("no_hash", "in a state but no job hash"),
        ("no_state", "job hash but in no state"),
        ("no_lock", "active with neither a lock nor a stall mark"),
        ("stray_mark", "stall mark on a job that is not active"),
        ("stray_lock", "lock on a job that is not active"),
        ("orphan_logs", "job key left without its job hash"),
        ("half_written", "job hash missing one of"),
        ("unfinished", "finished without finished_on"),
        ("counter", "2 jobs in completed but counters.completed"),
        ("events", "events stream holds"),
    ],
)
async def test_each_kind_of_damage_is_reported(
    redis_url: str, queue_name: str, redis: aioredis.Redis, damage: str, rule: str
) -> None:
    queue = await _queue_in_every_state(redis_url, queue_name)
    keys = QueueKeys(queue_name)
    try:
        waiting = (await queue.get_job_ids("wait", 0, 0))[0]
        active = (await queue.get_job_ids("active", 0, 0))[0]
        done = (await queue.get_job_ids("completed", 0, 0))[0]
        if damage == "twice":
            await redis.zadd(keys.delayed, {waiting: 1})
        elif damage == "no_hash":
            await redis.delete(keys.job(waiting))
        elif damage == "no_state":
            await redis.lrem(keys.wait, 0, waiting)
        elif damage == "no_lock":
            await redis.delete(keys.lock(active))
        elif damage == "stray_mark":
            await redis.sadd(keys.stalled, waiting)
        elif damage == "stray_lock":
            await redis.set(keys.lock(waiting), "x")
        elif damage == "orphan_logs":
            await redis.rpush(keys.logs("gone"), "line")
        elif damage == "half_written":
            await redis.hdel(keys.job(waiting), "opts")
        elif damage == "unfinished":
            await redis.hdel(keys.job(done), "finished_on")
        elif damage == "counter":
            await redis.hset(keys.counters, "completed", 1)
        elif damage == "events":
            await redis.hset(keys.meta, "max_events", 1)
            for _ in range(150):
                await redis.xadd(keys.events, {"event": "x"})
        report = await check_invariants(redis, queue_name)
        assert any(v.startswith(rule) for v in report.violations), report.violations
        with pytest.raises(AssertionError, match="invariants broken"):
            await assert_invariants(redis, queue_name)
    finally:
        await queue.close()
