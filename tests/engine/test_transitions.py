"""Every Lua transition called directly through ``engine.commands``, against a real server.

Each test drives a script and then reads the queue's keys and events stream back, so it checks
what the script left behind, not what it was asked to do.
"""

from __future__ import annotations

import asyncio
import re
from importlib.resources import files
from typing import cast

import pytest
import redis.asyncio as aioredis

from engine import commands
from engine.commands import Lease, Taken, TakenJob
from engine.errors import JobNotActive, JobNotFound, JobStateError, LockLost
from engine.keys import QueueKeys
from engine.options import Retention
from engine.queue import Queue
from engine.scripts import SCRIPT_NAMES, ScriptRegistry

KEEP_ALL = Retention()
LOCK_MS = 30_000
PRIORITY_SHIFT = 2**32

Fields = dict[str, str]


# ---- helpers -------------------------------------------------------------------------------


@pytest.fixture
def keys(queue_name: str) -> QueueKeys:
    return QueueKeys(queue_name)


@pytest.fixture
def scripts(redis: aioredis.Redis) -> ScriptRegistry:
    return ScriptRegistry(redis)


async def add(
    scripts: ScriptRegistry,
    keys: QueueKeys,
    *,
    job_id: str = "",
    name: str = "job",
    data: str = "{}",
    delay: int = 0,
    priority: int = 0,
    lifo: bool = False,
    attempts: int = 1,
) -> str:
    reply = await commands.add_job(
        scripts,
        keys,
        job_id=job_id,
        name=name,
        data=data,
        opts="{}",
        delay=delay,
        priority=priority,
        lifo=lifo,
        attempts=attempts,
        max_events=10_000,
    )
    added = commands.parse_add(reply)
    assert added.state is not None  # created
    return added.job_id


def lease(count: int = 1, lock_ms: int = LOCK_MS, base: str = "tok-w1") -> Lease:
    return Lease(base, lock_ms, "w1", count)


async def take(
    scripts: ScriptRegistry, keys: QueueKeys, count: int = 1, lock_ms: int = LOCK_MS
) -> Taken:
    return await commands.move_to_active(scripts, keys, lease(count, lock_ms))


async def take_one(scripts: ScriptRegistry, keys: QueueKeys, lock_ms: int = LOCK_MS) -> TakenJob:
    taken = await take(scripts, keys, 1, lock_ms)
    assert len(taken.jobs) == 1
    return taken.jobs[0]


async def events(redis: aioredis.Redis, keys: QueueKeys) -> list[Fields]:
    entries = await redis.xrange(keys.events) or []
    return [{str(k): str(v) for k, v in (fields or {}).items()} for _id, fields in entries]


def kinds(evs: list[Fields]) -> list[str]:
    return [e["event"] for e in evs]


async def clear_events(redis: aioredis.Redis, keys: QueueKeys) -> None:
    await redis.delete(keys.events)


async def server_ms(redis: aioredis.Redis) -> int:
    seconds, micros = await redis.time()
    return int(seconds) * 1000 + int(micros) // 1000


async def hash_of(redis: aioredis.Redis, key: str) -> Fields:
    return {str(k): str(v) for k, v in (await redis.hgetall(key)).items()}


async def job_hash(redis: aioredis.Redis, keys: QueueKeys, job_id: str) -> Fields:
    return await hash_of(redis, keys.job(job_id))


async def list_items(redis: aioredis.Redis, key: str) -> list[str]:
    return [str(x) for x in await redis.lrange(key, 0, -1)]


async def zmembers(redis: aioredis.Redis, key: str) -> list[str]:
    return [str(x) for x in await redis.zrange(key, 0, -1)]


async def zscores(redis: aioredis.Redis, key: str) -> dict[str, float]:
    pairs = cast(list[tuple[str, float]], await redis.zrange(key, 0, -1, withscores=True))
    return {str(member): float(score) for member, score in pairs}


async def keys_left(redis: aioredis.Redis, keys: QueueKeys) -> list[str]:
    return sorted([k async for k in redis.scan_iter(match=keys.base + ":*", count=1000)])


async def finish(
    scripts: ScriptRegistry, keys: QueueKeys, outcome: str, retention: Retention = KEEP_ALL
) -> str:
    """Add a job, take it and complete it or fail it for good; return its id."""
    job_id = await add(scripts, keys)
    job = await take_one(scripts, keys)
    assert job.id == job_id
    if outcome == "completed":
        await commands.complete_job(scripts, keys, job.id, job.token, '"ok"', retention)
    else:
        await commands.fail_job(scripts, keys, job.id, job.token, "boom", "[]", -1, retention)
    return job_id


# ---- add_job -------------------------------------------------------------------------------


async def test_add_job_auto_ids_increment(
    redis: aioredis.Redis, scripts: ScriptRegistry, keys: QueueKeys
) -> None:
    first = await add(scripts, keys, name="a", data='{"n":1}', attempts=3)
    second = await add(scripts, keys, name="b")

    assert (first, second) == ("1", "2")
    assert await list_items(redis, keys.wait) == ["2", "1"]  # LPUSH: oldest at the right
    fields = await job_hash(redis, keys, "1")
    assert fields["name"] == "a"
    assert fields["data"] == '{"n":1}'
    assert fields["attempts"] == "3"
    assert fields["attempts_made"] == "0"
    assert fields["attempts_started"] == "0"
    assert int(fields["timestamp"]) > 0
    meta = await hash_of(redis, keys.meta)
    assert meta["version"] == "1"
    assert meta["max_events"] == "10000"
    evs = await events(redis, keys)
    assert kinds(evs) == ["added", "waiting", "added", "waiting"]
    assert evs[0] == {"event": "added", "job_id": "1", "name": "a"}
    assert evs[1] == {"event": "waiting", "job_id": "1"}


async def test_add_job_duplicate_custom_id_returns_existing(
    redis: aioredis.Redis, scripts: ScriptRegistry, keys: QueueKeys
) -> None:
    assert await add(scripts, keys, job_id="order-7", name="first") == "order-7"
    reply = await commands.add_job(
        scripts,
        keys,
        job_id="order-7",
        name="second",
        data='{"x":2}',
        opts="{}",
        delay=0,
        priority=0,
        lifo=False,
        attempts=1,
        max_events=10_000,
    )

    assert commands.parse_add(reply) == commands.Added("order-7", None, None)
    assert (await job_hash(redis, keys, "order-7"))["name"] == "first"
    assert await list_items(redis, keys.wait) == ["order-7"]
    assert not await redis.exists(keys.id)  # custom ids do not use the counter
    evs = await events(redis, keys)
    assert kinds(evs) == ["added", "waiting", "duplicated"]
    assert evs[-1]["job_id"] == "order-7"


async def test_add_job_delayed_goes_to_delayed_and_marker(
    redis: aioredis.Redis, scripts: ScriptRegistry, keys: QueueKeys
) -> None:
    before = await server_ms(redis)
    job_id = await add(scripts, keys, delay=5_000)
    after = await server_ms(redis)

    score = await redis.zscore(keys.delayed, job_id)
    assert score is not None
    assert before + 5_000 <= score <= after + 5_000
    assert await redis.zscore(keys.marker, "d") == score
    assert not await redis.exists(keys.wait)
    assert (await job_hash(redis, keys, job_id))["delay"] == "5000"
    evs = await events(redis, keys)
    assert kinds(evs) == ["added", "delayed"]
    assert int(evs[1]["delay"]) == int(score)


async def test_add_job_priority_is_fifo_within_a_priority(
    redis: aioredis.Redis, scripts: ScriptRegistry, keys: QueueKeys
) -> None:
    low_a = await add(scripts, keys, priority=2)
    high = await add(scripts, keys, priority=1)
    low_b = await add(scripts, keys, priority=2)

    assert await zmembers(redis, keys.prioritized) == [high, low_a, low_b]
    scores = await zscores(redis, keys.prioritized)
    assert scores[high] // PRIORITY_SHIFT == 1
    assert scores[low_a] // PRIORITY_SHIFT == 2
    assert not await redis.exists(keys.wait)
    taken = await take(scripts, keys, count=3)
    assert [j.id for j in taken.jobs] == [high, low_a, low_b]


async def test_add_job_lifo_is_taken_first(
    redis: aioredis.Redis, scripts: ScriptRegistry, keys: QueueKeys
) -> None:
    a = await add(scripts, keys)
    b = await add(scripts, keys)
    c = await add(scripts, keys, lifo=True)

    assert await list_items(redis, keys.wait) == [b, a, c]  # RPUSH: c is at the taking end
    taken = await take(scripts, keys, count=3)
    assert [j.id for j in taken.jobs] == [c, a, b]


async def test_add_job_on_paused_queue_goes_to_paused(
    redis: aioredis.Redis, scripts: ScriptRegistry, keys: QueueKeys
) -> None:
    assert await commands.pause_queue(scripts, keys)  # before the queue has any job
    await redis.delete(keys.marker)
    job_id = await add(scripts, keys)

    assert await list_items(redis, keys.paused) == [job_id]
    assert not await redis.exists(keys.wait)
    assert not await redis.exists(keys.marker)  # no worker is woken for a paused queue
    meta = await hash_of(redis, keys.meta)
    assert meta["paused"] == "1"
    assert meta["version"] == "1"  # still set up by its first job, though pause came first
    assert meta["max_events"] == "10000"


# ---- move_to_active ------------------------------------------------------------------------


async def test_move_to_active_takes_up_to_count_under_locks(
    redis: aioredis.Redis, scripts: ScriptRegistry, keys: QueueKeys
) -> None:
    ids = [await add(scripts, keys, name=f"n{i}") for i in range(3)]
    await clear_events(redis, keys)

    taken = await take(scripts, keys, count=2, lock_ms=10_000)

    assert [j.id for j in taken.jobs] == ids[:2]
    assert taken.next_delay_ms == -1
    assert await list_items(redis, keys.wait) == [ids[2]]
    assert await zmembers(redis, keys.active) == ids[:2]
    for job in taken.jobs:
        assert job.token == "tok-w1:1"
        assert await redis.get(keys.lock(job.id)) == job.token
        ttl = await redis.pttl(keys.lock(job.id))
        assert 9_000 < ttl <= 10_000
        assert job.fields["attempts_started"] == "1"
        assert job.fields["worker"] == "w1"
        assert int(job.fields["processed_on"]) > 0
        assert job.fields["name"] == f"n{ids.index(job.id)}"
    evs = await events(redis, keys)
    assert evs == [
        {"event": "active", "job_id": ids[0], "prev": "wait"},
        {"event": "active", "job_id": ids[1], "prev": "wait"},
    ]
    assert await redis.zscore(keys.marker, "0") is not None  # a job is left: wake a worker


async def test_move_to_active_takes_wait_before_prioritized_in_priority_order(
    redis: aioredis.Redis, scripts: ScriptRegistry, keys: QueueKeys
) -> None:
    p3 = await add(scripts, keys, priority=3)
    p1 = await add(scripts, keys, priority=1)
    plain = await add(scripts, keys)
    p2 = await add(scripts, keys, priority=2)
    await clear_events(redis, keys)

    taken = await take(scripts, keys, count=10)

    assert [j.id for j in taken.jobs] == [plain, p1, p2, p3]
    assert [e["prev"] for e in await events(redis, keys)] == ["wait"] + ["prioritized"] * 3


async def test_move_to_active_counts_each_attempt_in_the_token(
    scripts: ScriptRegistry, keys: QueueKeys
) -> None:
    job_id = await add(scripts, keys, attempts=2)
    first = await take_one(scripts, keys)
    await commands.fail_job(scripts, keys, job_id, first.token, "x", "[]", 0, KEEP_ALL)

    second = await take_one(scripts, keys)

    assert second.token == "tok-w1:2"
    assert second.fields["attempts_started"] == "2"
    assert second.fields["attempts_made"] == "1"


async def test_move_to_active_promotes_due_delayed_jobs(
    redis: aioredis.Redis, scripts: ScriptRegistry, keys: QueueKeys
) -> None:
    job_id = await add(scripts, keys, delay=200)
    assert (await take(scripts, keys)).jobs == []
    await clear_events(redis, keys)
    await asyncio.sleep(0.25)

    taken = await take(scripts, keys)

    assert [j.id for j in taken.jobs] == [job_id]
    assert taken.next_delay_ms == -1
    assert not await redis.exists(keys.delayed)
    assert await events(redis, keys) == [
        {"event": "waiting", "job_id": job_id, "prev": "delayed"},
        {"event": "active", "job_id": job_id, "prev": "wait"},
    ]


async def test_move_to_active_reports_ms_until_the_next_delayed_job(
    scripts: ScriptRegistry, keys: QueueKeys
) -> None:
    assert (await take(scripts, keys)).next_delay_ms == -1
    await add(scripts, keys, delay=60_000)
    await add(scripts, keys, delay=10_000)

    taken = await take(scripts, keys)

    assert taken.jobs == []
    assert 9_000 < taken.next_delay_ms <= 10_000


async def test_move_to_active_on_paused_queue_takes_nothing(
    redis: aioredis.Redis, scripts: ScriptRegistry, keys: QueueKeys
) -> None:
    job_id = await add(scripts, keys)
    await commands.pause_queue(scripts, keys)

    taken = await take(scripts, keys, count=5)

    assert taken.jobs == []
    assert await list_items(redis, keys.paused) == [job_id]
    assert not await redis.exists(keys.active)


# ---- complete_job --------------------------------------------------------------------------


async def test_complete_job_is_fenced_by_the_lock(
    redis: aioredis.Redis, scripts: ScriptRegistry, keys: QueueKeys
) -> None:
    job_id = await add(scripts, keys)
    job = await take_one(scripts, keys)

    with pytest.raises(LockLost, match="held by another worker"):
        await commands.complete_job(scripts, keys, job_id, "tok-other:1", "1", KEEP_ALL)
    with pytest.raises(JobNotFound, match="'nope'"):
        await commands.complete_job(scripts, keys, "nope", job.token, "1", KEEP_ALL)
    assert await zmembers(redis, keys.active) == [job_id]

    await redis.delete(keys.lock(job_id))
    with pytest.raises(LockLost, match="lock is gone"):
        await commands.complete_job(scripts, keys, job_id, job.token, "1", KEEP_ALL)

    assert await zmembers(redis, keys.active) == [job_id]
    assert not await redis.exists(keys.completed)
    assert not await redis.hexists(keys.counters, "completed")


async def test_complete_job_refuses_a_locked_job_that_is_not_active(
    redis: aioredis.Redis, scripts: ScriptRegistry, keys: QueueKeys
) -> None:
    job_id = await add(scripts, keys)
    await redis.set(keys.lock(job_id), "tok:1")

    with pytest.raises(JobNotActive):
        await commands.complete_job(scripts, keys, job_id, "tok:1", "1", KEEP_ALL)
    assert await list_items(redis, keys.wait) == [job_id]


async def test_complete_job_records_success(
    redis: aioredis.Redis, scripts: ScriptRegistry, keys: QueueKeys
) -> None:
    job_id = await add(scripts, keys)
    job = await take_one(scripts, keys)
    await redis.sadd(keys.stalled, job_id)
    await clear_events(redis, keys)

    taken = await commands.complete_job(scripts, keys, job_id, job.token, '{"sum":3}', KEEP_ALL)

    assert taken == Taken([], -1)
    assert await zmembers(redis, keys.completed) == [job_id]
    assert not await redis.exists(keys.active)
    assert not await redis.exists(keys.lock(job_id))
    assert not await redis.sismember(keys.stalled, job_id)
    assert await redis.hget(keys.counters, "completed") == "1"
    fields = await job_hash(redis, keys, job_id)
    assert fields["returnvalue"] == '{"sum":3}'
    assert fields["attempts_made"] == "1"
    assert int(fields["finished_on"]) >= int(fields["processed_on"])
    assert await events(redis, keys) == [
        {"event": "completed", "job_id": job_id, "returnvalue": '{"sum":3}', "prev": "active"}
    ]


async def test_complete_job_keep_zero_deletes_the_job(
    redis: aioredis.Redis, scripts: ScriptRegistry, keys: QueueKeys
) -> None:
    job_id = await add(scripts, keys)
    await redis.rpush(keys.logs(job_id), "line")
    job = await take_one(scripts, keys)

    await commands.complete_job(scripts, keys, job_id, job.token, "1", Retention(0, 0))

    assert not await redis.exists(keys.job(job_id), keys.logs(job_id), keys.lock(job_id))
    assert not await redis.exists(keys.completed)
    assert await redis.hget(keys.counters, "completed") == "1"
    assert kinds(await events(redis, keys))[-1] == "completed"


async def test_complete_job_keep_n_trims_the_oldest(
    redis: aioredis.Redis, scripts: ScriptRegistry, keys: QueueKeys
) -> None:
    for _ in range(3):
        await add(scripts, keys)
    taken = await take(scripts, keys, count=3)

    for job in taken.jobs:
        await commands.complete_job(scripts, keys, job.id, job.token, "1", Retention(2, 0))

    assert await zmembers(redis, keys.completed) == ["2", "3"]
    assert not await redis.exists(keys.job("1"))
    assert await redis.exists(keys.job("2"), keys.job("3")) == 2
    assert await redis.hget(keys.counters, "completed") == "3"


async def test_complete_job_max_age_removes_old_jobs(
    redis: aioredis.Redis, scripts: ScriptRegistry, keys: QueueKeys
) -> None:
    old = await finish(scripts, keys, "completed")
    # pretend it finished a minute ago
    await redis.zadd(keys.completed, {old: await server_ms(redis) - 60_000}, xx=True)

    recent = await finish(scripts, keys, "completed", Retention(-1, 30_000))

    assert await zmembers(redis, keys.completed) == [recent]
    assert not await redis.exists(keys.job(old))


async def test_complete_job_takes_the_next_job(
    redis: aioredis.Redis, scripts: ScriptRegistry, keys: QueueKeys
) -> None:
    first = await add(scripts, keys)
    second = await add(scripts, keys, name="next")
    await add(scripts, keys, delay=20_000)
    job = await take_one(scripts, keys)

    taken = await commands.complete_job(
        scripts, keys, first, job.token, "1", KEEP_ALL, Lease("tok-w2", 5_000, "w2", 1)
    )

    assert [j.id for j in taken.jobs] == [second]
    nxt = taken.jobs[0]
    assert nxt.token == "tok-w2:1"
    assert nxt.fields["name"] == "next"
    assert nxt.fields["worker"] == "w2"
    assert 19_000 < taken.next_delay_ms <= 20_000
    assert await zmembers(redis, keys.active) == [second]
    assert await redis.get(keys.lock(second)) == "tok-w2:1"
    assert 0 < await redis.pttl(keys.lock(second)) <= 5_000


# ---- complete_jobs -------------------------------------------------------------------------


async def test_complete_jobs_completes_each_job_under_its_own_token(
    redis: aioredis.Redis, scripts: ScriptRegistry, keys: QueueKeys
) -> None:
    ids = [await add(scripts, keys) for _ in range(5)]
    nxt = await add(scripts, keys, name="next")
    taken = (await take(scripts, keys, count=5)).jobs
    await redis.delete(keys.lock(ids[3]))  # this one lost its lock
    await clear_events(redis, keys)
    batch = [commands.Completion(j.id, j.token, f'"r{j.id}"', KEEP_ALL) for j in taken]
    batch[1] = commands.Completion(taken[1].id, "tok-other:1", '"x"', KEEP_ALL)
    batch.append(commands.Completion("nope", "tok-w1:1", '"x"', KEEP_ALL))

    codes, more = await commands.complete_jobs(scripts, keys, batch, lease(count=2))

    assert codes == [0, -6, 0, -2, 0, -1]
    done = [ids[0], ids[2], ids[4]]
    assert sorted(await zmembers(redis, keys.completed)) == sorted(done)
    assert await redis.hget(keys.counters, "completed") == "3"
    assert [j.id for j in more.jobs] == [nxt]
    assert sorted(await zmembers(redis, keys.active)) == sorted([ids[1], ids[3], nxt])
    for job_id in done:
        fields = await job_hash(redis, keys, job_id)
        assert fields["returnvalue"] == f'"r{job_id}"'
        assert fields["attempts_made"] == "1"
    evs = await events(redis, keys)
    assert [(e["event"], e["job_id"]) for e in evs] == [
        *(("completed", job_id) for job_id in done),
        ("active", nxt),
    ]


async def test_complete_jobs_applies_each_jobs_retention(
    redis: aioredis.Redis, scripts: ScriptRegistry, keys: QueueKeys
) -> None:
    for _ in range(4):
        await add(scripts, keys)
    taken = (await take(scripts, keys, count=4)).jobs
    retentions = [Retention(0, 0), KEEP_ALL, Retention(0, 0), KEEP_ALL]
    batch = [
        commands.Completion(j.id, j.token, "1", r) for j, r in zip(taken, retentions, strict=True)
    ]

    codes, _ = await commands.complete_jobs(scripts, keys, batch)

    assert codes == [0, 0, 0, 0]
    assert await zmembers(redis, keys.completed) == [taken[1].id, taken[3].id]
    assert not await redis.exists(keys.job(taken[0].id), keys.job(taken[2].id))
    assert await redis.hget(keys.counters, "completed") == "4"


async def test_complete_jobs_refuses_a_malformed_call(
    scripts: ScriptRegistry, keys: QueueKeys
) -> None:
    with pytest.raises(ValueError, match="at least one job"):
        await commands.complete_jobs(scripts, keys, [])


# ---- fail_job ------------------------------------------------------------------------------


async def test_fail_job_retry_now_goes_back_to_wait(
    redis: aioredis.Redis, scripts: ScriptRegistry, keys: QueueKeys
) -> None:
    job_id = await add(scripts, keys, attempts=3)
    job = await take_one(scripts, keys)
    await clear_events(redis, keys)

    await commands.fail_job(scripts, keys, job_id, job.token, "flaky", '["tb"]', 0, KEEP_ALL)

    assert await list_items(redis, keys.wait) == [job_id]
    assert not await redis.exists(keys.active, keys.failed, keys.lock(job_id))
    fields = await job_hash(redis, keys, job_id)
    assert fields["attempts_made"] == "1"
    assert fields["failed_reason"] == "flaky"
    assert fields["stacktrace"] == '["tb"]'
    assert not await redis.hexists(keys.counters, "failed")
    assert await events(redis, keys) == [
        {
            "event": "retrying",
            "job_id": job_id,
            "failed_reason": "flaky",
            "attempts_made": "1",
            "prev": "active",
        },
        {"event": "waiting", "job_id": job_id, "prev": "active"},
    ]


async def test_fail_job_retry_later_goes_to_delayed(
    redis: aioredis.Redis, scripts: ScriptRegistry, keys: QueueKeys
) -> None:
    job_id = await add(scripts, keys, attempts=3)
    job = await take_one(scripts, keys)
    await clear_events(redis, keys)
    before = await server_ms(redis)

    await commands.fail_job(scripts, keys, job_id, job.token, "later", "[]", 7_000, KEEP_ALL)

    after = await server_ms(redis)
    score = await redis.zscore(keys.delayed, job_id)
    assert score is not None
    assert before + 7_000 <= score <= after + 7_000
    assert await redis.zscore(keys.marker, "d") == score
    assert not await redis.exists(keys.wait, keys.active, keys.failed)
    assert kinds(await events(redis, keys)) == ["retrying", "delayed"]
    assert (await job_hash(redis, keys, job_id))["attempts_made"] == "1"


async def test_fail_job_final_goes_to_failed(
    redis: aioredis.Redis, scripts: ScriptRegistry, keys: QueueKeys
) -> None:
    job_id = await add(scripts, keys)
    job = await take_one(scripts, keys)
    await clear_events(redis, keys)

    taken = await commands.fail_job(
        scripts, keys, job_id, job.token, "fatal", '["a","b"]', -1, KEEP_ALL
    )

    assert taken.jobs == []
    assert await zmembers(redis, keys.failed) == [job_id]
    assert not await redis.exists(keys.active, keys.wait, keys.delayed, keys.lock(job_id))
    assert await redis.hget(keys.counters, "failed") == "1"
    fields = await job_hash(redis, keys, job_id)
    assert fields["attempts_made"] == "1"
    assert fields["failed_reason"] == "fatal"
    assert "finished_on" in fields
    assert await events(redis, keys) == [
        {
            "event": "failed",
            "job_id": job_id,
            "failed_reason": "fatal",
            "attempts_made": "1",
            "prev": "active",
        }
    ]


async def test_fail_job_is_fenced_and_keep_zero_deletes(
    redis: aioredis.Redis, scripts: ScriptRegistry, keys: QueueKeys
) -> None:
    job_id = await add(scripts, keys)
    job = await take_one(scripts, keys)
    with pytest.raises(LockLost):
        await commands.fail_job(scripts, keys, job_id, "bad", "x", "[]", -1, KEEP_ALL)
    with pytest.raises(JobNotFound):
        await commands.fail_job(scripts, keys, "missing", job.token, "x", "[]", -1, KEEP_ALL)
    assert await zmembers(redis, keys.active) == [job_id]

    await commands.fail_job(scripts, keys, job_id, job.token, "x", "[]", -1, Retention(0, 0))

    assert not await redis.exists(keys.job(job_id), keys.failed, keys.active)
    assert await redis.hget(keys.counters, "failed") == "1"


# ---- extend_locks --------------------------------------------------------------------------


async def test_extend_locks_renews_and_reports_lost(
    redis: aioredis.Redis, scripts: ScriptRegistry, keys: QueueKeys
) -> None:
    await add(scripts, keys)
    await add(scripts, keys)
    await add(scripts, keys)
    a, b, c = (await take(scripts, keys, count=3, lock_ms=1_000)).jobs
    await redis.sadd(keys.stalled, a.id, b.id, c.id)
    await redis.delete(keys.lock(c.id))

    lost = await commands.extend_locks(
        scripts, keys, 60_000, [(a.id, a.token), (b.id, "tok-other:1"), (c.id, c.token)]
    )

    assert lost == [b.id, c.id]
    assert 59_000 < await redis.pttl(keys.lock(a.id)) <= 60_000
    assert await redis.pttl(keys.lock(b.id)) <= 1_000
    assert await redis.get(keys.lock(b.id)) == b.token
    assert not await redis.exists(keys.lock(c.id))
    assert await redis.smembers(keys.stalled) == {b.id, c.id}  # a renewal clears the mark
    assert await commands.extend_locks(scripts, keys, 1_000, []) == []


# ---- recover_stalled -----------------------------------------------------------------------


async def test_recover_stalled_moves_an_unlocked_job_back_after_the_interval(
    redis: aioredis.Redis, scripts: ScriptRegistry, keys: QueueKeys
) -> None:
    job_id = await add(scripts, keys)
    await take_one(scripts, keys)

    assert await commands.recover_stalled(scripts, keys, 1, 500) == ([], [])
    assert await redis.smembers(keys.stalled) == {job_id}  # first call only marks
    await redis.delete(keys.lock(job_id))  # the worker died
    await clear_events(redis, keys)

    # within the interval: nothing happens at all
    assert await commands.recover_stalled(scripts, keys, 1, 500) == ([], [])
    assert await zmembers(redis, keys.active) == [job_id]
    assert await events(redis, keys) == []

    await asyncio.sleep(0.55)
    assert await commands.recover_stalled(scripts, keys, 1, 500) == ([job_id], [])

    assert await list_items(redis, keys.wait) == [job_id]
    assert not await redis.exists(keys.active, keys.stalled)
    assert (await job_hash(redis, keys, job_id))["stalled_count"] == "1"
    assert await events(redis, keys) == [
        {"event": "stalled", "job_id": job_id, "prev": "active"},
        {"event": "waiting", "job_id": job_id, "prev": "active"},
    ]
    # and it can be taken again
    assert (await take_one(scripts, keys)).id == job_id


async def test_recover_stalled_leaves_jobs_whose_lock_is_held(
    redis: aioredis.Redis, scripts: ScriptRegistry, keys: QueueKeys
) -> None:
    job_id = await add(scripts, keys)
    await take_one(scripts, keys)
    await commands.recover_stalled(scripts, keys, 1, 10_000)
    await redis.delete(keys.stalled_check)  # as if the interval had passed

    assert await commands.recover_stalled(scripts, keys, 1, 10_000) == ([], [])
    assert await zmembers(redis, keys.active) == [job_id]
    assert await redis.smembers(keys.stalled) == {job_id}  # marked again


async def test_recover_stalled_fails_a_job_over_the_limit(
    redis: aioredis.Redis, scripts: ScriptRegistry, keys: QueueKeys
) -> None:
    job_id = await add(scripts, keys, attempts=5)
    for round_ in range(2):
        await take_one(scripts, keys)
        await commands.recover_stalled(scripts, keys, 1, 10_000)  # mark
        await redis.delete(keys.lock(job_id), keys.stalled_check)
        recovered, failed = await commands.recover_stalled(scripts, keys, 1, 10_000)
        await redis.delete(keys.stalled_check)
        if round_ == 0:
            assert (recovered, failed) == ([job_id], [])
        else:
            assert (recovered, failed) == ([], [job_id])

    assert await zmembers(redis, keys.failed) == [job_id]
    assert not await redis.exists(keys.active, keys.wait)
    assert await redis.hget(keys.counters, "failed") == "1"
    fields = await job_hash(redis, keys, job_id)
    assert fields["stalled_count"] == "2"
    assert fields["failed_reason"] == "job stalled more than allowable limit (1)"
    assert fields["attempts_made"] == "1"
    failed_events = [e for e in await events(redis, keys) if e["event"] == "failed"]
    assert failed_events == [
        {
            "event": "failed",
            "job_id": job_id,
            "failed_reason": "job stalled more than allowable limit (1)",
            "attempts_made": "1",
            "prev": "active",
        }
    ]


# ---- hand_back_job / update_progress -------------------------------------------------------


async def test_hand_back_job_returns_it_to_the_front_of_wait(
    redis: aioredis.Redis, scripts: ScriptRegistry, keys: QueueKeys
) -> None:
    first = await add(scripts, keys)
    second = await add(scripts, keys)
    job = await take_one(scripts, keys)
    assert job.id == first
    with pytest.raises(LockLost):
        await commands.hand_back_job(scripts, keys, first, "tok-other:1")
    await clear_events(redis, keys)

    await commands.hand_back_job(scripts, keys, first, job.token)

    assert await list_items(redis, keys.wait) == [second, first]
    assert not await redis.exists(keys.active, keys.lock(first))
    assert (await job_hash(redis, keys, first))["attempts_started"] == "0"
    assert await events(redis, keys) == [
        {"event": "waiting", "job_id": first, "prev": "active", "reason": "worker shutdown"}
    ]
    # another worker takes it next; the old token no longer fences anything
    again = await commands.move_to_active(scripts, keys, Lease("tok-w2", LOCK_MS, "w2", 1))
    assert [(j.id, j.token) for j in again.jobs] == [(first, "tok-w2:1")]
    with pytest.raises(LockLost):
        await commands.hand_back_job(scripts, keys, first, job.token)


async def test_update_progress_is_fenced(
    redis: aioredis.Redis, scripts: ScriptRegistry, keys: QueueKeys
) -> None:
    job_id = await add(scripts, keys)
    job = await take_one(scripts, keys)
    await clear_events(redis, keys)

    await commands.update_progress(scripts, keys, job_id, job.token, '{"pct":50}')
    with pytest.raises(LockLost):
        await commands.update_progress(scripts, keys, job_id, "tok-other:1", "99")
    with pytest.raises(JobNotFound):
        await commands.update_progress(scripts, keys, "ghost", job.token, "99")
    await redis.delete(keys.lock(job_id))
    with pytest.raises(LockLost):
        await commands.update_progress(scripts, keys, job_id, job.token, "99")

    assert (await job_hash(redis, keys, job_id))["progress"] == '{"pct":50}'
    assert await events(redis, keys) == [
        {"event": "progress", "job_id": job_id, "progress": '{"pct":50}'}
    ]


# ---- retry / promote -----------------------------------------------------------------------


async def test_retry_job_only_from_failed(
    redis: aioredis.Redis, scripts: ScriptRegistry, keys: QueueKeys
) -> None:
    failed = await finish(scripts, keys, "failed")
    waiting = await add(scripts, keys)
    await clear_events(redis, keys)

    result = await commands.retry_job(scripts, keys, "failed", [failed, waiting, "ghost"])

    assert result == [True, False, False]
    assert await list_items(redis, keys.wait) == [failed, waiting]
    assert not await redis.exists(keys.failed)
    fields = await job_hash(redis, keys, failed)
    assert fields["attempts_made"] == "0"
    assert fields["attempts_started"] == "1"  # kept: the next take gets a fresh token
    for gone in ("failed_reason", "finished_on", "processed_on", "stacktrace"):
        assert gone not in fields
    assert await events(redis, keys) == [{"event": "waiting", "job_id": failed, "prev": "failed"}]
    # retried once: a second retry of the same id finds nothing to do
    assert await commands.retry_job(scripts, keys, "failed", [failed]) == [False]
    rerun = (await take(scripts, keys, count=2)).jobs
    assert [(j.id, j.token) for j in rerun] == [(waiting, "tok-w1:1"), (failed, "tok-w1:2")]


async def test_retry_job_from_completed(
    redis: aioredis.Redis, scripts: ScriptRegistry, keys: QueueKeys
) -> None:
    done = await finish(scripts, keys, "completed")

    assert await commands.retry_job(scripts, keys, "failed", [done]) == [False]
    assert await commands.retry_job(scripts, keys, "completed", [done]) == [True]
    assert await list_items(redis, keys.wait) == [done]
    assert "returnvalue" not in await job_hash(redis, keys, done)


async def test_retry_jobs_respects_the_cutoff_in_batches(
    redis: aioredis.Redis, scripts: ScriptRegistry, keys: QueueKeys
) -> None:
    ids = [await finish(scripts, keys, "failed") for _ in range(3)]
    await redis.zadd(keys.failed, {ids[0]: 1_000, ids[1]: 2_000, ids[2]: 3_000}, xx=True)

    assert await commands.retry_jobs(scripts, keys, "failed", 2_000, 1) == 1
    assert await list_items(redis, keys.wait) == [ids[0]]
    assert await commands.retry_jobs(scripts, keys, "failed", 2_000, 1) == 1
    assert await commands.retry_jobs(scripts, keys, "failed", 2_000, 1) == 0

    assert await list_items(redis, keys.wait) == [ids[1], ids[0]]
    assert await zmembers(redis, keys.failed) == [ids[2]]  # finished after the cut-off


async def test_promote_job_single_and_batch(
    redis: aioredis.Redis, scripts: ScriptRegistry, keys: QueueKeys
) -> None:
    late = await add(scripts, keys, delay=90_000)
    early = await add(scripts, keys, delay=30_000)
    middle = await add(scripts, keys, delay=60_000, priority=4)
    plain = await add(scripts, keys)
    await clear_events(redis, keys)

    assert await commands.promote_job(scripts, keys, [late, plain]) == [True, False]
    assert await list_items(redis, keys.wait) == [late, plain]
    assert (await job_hash(redis, keys, late))["delay"] == "0"
    assert await events(redis, keys) == [
        {"event": "promoted", "job_id": late},
        {"event": "waiting", "job_id": late, "prev": "delayed"},
    ]

    assert await commands.promote_jobs(scripts, keys, 1) == 1  # the earliest first
    assert await list_items(redis, keys.wait) == [early, late, plain]
    assert await zmembers(redis, keys.delayed) == [middle]
    assert await commands.promote_jobs(scripts, keys, 10) == 1
    assert await zmembers(redis, keys.prioritized) == [middle]  # keeps its priority
    assert not await redis.exists(keys.delayed)
    assert await commands.promote_jobs(scripts, keys, 10) == 0


# ---- remove_job ----------------------------------------------------------------------------


async def job_in_state(
    redis: aioredis.Redis, scripts: ScriptRegistry, keys: QueueKeys, state: str
) -> str:
    """Make one job that is in ``state`` (active: a job whose lock expired)."""
    if state in ("completed", "failed"):
        return await finish(scripts, keys, state)
    if state == "delayed":
        return await add(scripts, keys, delay=60_000)
    if state == "prioritized":
        return await add(scripts, keys, priority=5)
    job_id = await add(scripts, keys)
    if state == "paused":
        await commands.pause_queue(scripts, keys)
    elif state == "active":
        await take_one(scripts, keys)
        await redis.delete(keys.lock(job_id))
    return job_id


@pytest.mark.parametrize(
    ("state", "key"),
    [
        ("wait", "wait"),
        ("paused", "paused"),
        ("prioritized", "prioritized"),
        ("delayed", "delayed"),
        ("active", "active"),
        ("completed", "completed"),
        ("failed", "failed"),
    ],
)
async def test_remove_job_from_each_state(
    redis: aioredis.Redis, scripts: ScriptRegistry, keys: QueueKeys, state: str, key: str
) -> None:
    job_id = await job_in_state(redis, scripts, keys, state)
    await redis.rpush(keys.logs(job_id), "a log line")
    await redis.sadd(keys.stalled, job_id)
    await clear_events(redis, keys)

    assert await commands.remove_job(scripts, keys, job_id) == state

    assert not await redis.exists(getattr(keys, key))
    assert not await redis.exists(keys.job(job_id), keys.logs(job_id), keys.lock(job_id))
    assert not await redis.sismember(keys.stalled, job_id)
    assert await events(redis, keys) == [{"event": "removed", "job_id": job_id, "prev": state}]
    with pytest.raises(JobNotFound):
        await commands.remove_job(scripts, keys, job_id)


async def test_remove_job_refuses_a_locked_active_job(
    redis: aioredis.Redis, scripts: ScriptRegistry, keys: QueueKeys
) -> None:
    job_id = await add(scripts, keys)
    job = await take_one(scripts, keys)

    with pytest.raises(JobStateError, match="being processed") as info:
        await commands.remove_job(scripts, keys, job_id)

    assert info.value.state == "active"
    assert await zmembers(redis, keys.active) == [job_id]
    assert await redis.get(keys.lock(job_id)) == job.token
    assert "removed" not in kinds(await events(redis, keys))


# ---- pause / resume ------------------------------------------------------------------------


async def test_pause_and_resume_rename_the_ready_list(
    redis: aioredis.Redis, scripts: ScriptRegistry, keys: QueueKeys
) -> None:
    ids = [await add(scripts, keys) for _ in range(3)]
    order = await list_items(redis, keys.wait)
    await clear_events(redis, keys)
    await redis.delete(keys.marker)

    assert await commands.pause_queue(scripts, keys) is True
    assert await commands.pause_queue(scripts, keys) is False
    assert not await redis.exists(keys.wait)
    assert await list_items(redis, keys.paused) == order
    assert await redis.hget(keys.meta, "paused") == "1"

    assert await commands.resume_queue(scripts, keys) is True
    assert await commands.resume_queue(scripts, keys) is False
    assert not await redis.exists(keys.paused)
    assert await list_items(redis, keys.wait) == order
    assert not await redis.hexists(keys.meta, "paused")
    assert await redis.zscore(keys.marker, "0") is not None  # idle workers are woken
    assert await events(redis, keys) == [{"event": "paused"}, {"event": "resumed"}]
    assert [j.id for j in (await take(scripts, keys, count=3)).jobs] == ids


async def test_pause_and_resume_keep_order_with_leftovers(
    redis: aioredis.Redis, scripts: ScriptRegistry, keys: QueueKeys
) -> None:
    # paused and wait both exist (e.g. a hand-made key): older paused entries run first
    await redis.lpush(keys.paused, "p1", "p2")
    await redis.lpush(keys.wait, "w1", "w2")

    assert await commands.pause_queue(scripts, keys)
    assert not await redis.exists(keys.wait)
    items = await list_items(redis, keys.paused)
    assert list(reversed(items)) == ["p1", "p2", "w1", "w2"]  # in taking order

    assert await commands.resume_queue(scripts, keys)
    assert not await redis.exists(keys.paused)
    assert list(reversed(await list_items(redis, keys.wait))) == ["p1", "p2", "w1", "w2"]


# ---- clean / drain / obliterate ------------------------------------------------------------


async def test_clean_jobs_removes_old_finished_jobs_in_batches(
    redis: aioredis.Redis, scripts: ScriptRegistry, keys: QueueKeys
) -> None:
    ids = [await finish(scripts, keys, "completed") for _ in range(4)]
    failed = await finish(scripts, keys, "failed")
    now = await server_ms(redis)
    await redis.zadd(keys.completed, {ids[0]: now - 50_000, ids[1]: now - 40_000}, xx=True)
    await redis.zadd(keys.completed, {ids[2]: now - 30_000}, xx=True)
    await redis.zadd(keys.failed, {failed: now - 50_000}, xx=True)
    await clear_events(redis, keys)

    assert await commands.clean_jobs(scripts, keys, "completed", 35_000, 1) == [ids[0]]
    assert await commands.clean_jobs(scripts, keys, "completed", 35_000, 10) == [ids[1]]
    assert await commands.clean_jobs(scripts, keys, "completed", 35_000, 10) == []

    assert await zmembers(redis, keys.completed) == [ids[2], ids[3]]
    assert not await redis.exists(keys.job(ids[0]), keys.job(ids[1]))
    assert await zmembers(redis, keys.failed) == [failed]  # other state untouched
    assert await events(redis, keys) == [
        {"event": "cleaned", "state": "completed", "count": "1"},
        {"event": "cleaned", "state": "completed", "count": "1"},
    ]


@pytest.mark.parametrize("include_delayed", [False, True])
@pytest.mark.parametrize("paused", [False, True])
async def test_drain_queue_removes_ready_jobs(
    redis: aioredis.Redis,
    scripts: ScriptRegistry,
    keys: QueueKeys,
    include_delayed: bool,
    paused: bool,
) -> None:
    done = await finish(scripts, keys, "completed")
    await add(scripts, keys)
    active = (await take_one(scripts, keys)).id
    ready = [await add(scripts, keys), await add(scripts, keys)]
    ready.append(await add(scripts, keys, priority=1))
    delayed = await add(scripts, keys, delay=60_000)
    if paused:
        await commands.pause_queue(scripts, keys)
    await clear_events(redis, keys)

    removed = await commands.drain_queue(scripts, keys, include_delayed, 1_000)

    assert removed == len(ready) + int(include_delayed)
    assert not await redis.exists(keys.wait, keys.paused, keys.prioritized)
    for job_id in ready:
        assert not await redis.exists(keys.job(job_id))
    assert bool(await redis.exists(keys.job(delayed))) is not include_delayed
    assert (await zmembers(redis, keys.delayed) == [delayed]) is not include_delayed
    assert await zmembers(redis, keys.active) == [active]
    assert await zmembers(redis, keys.completed) == [done]
    assert await events(redis, keys) == []  # "drained" only once nothing is left

    assert await commands.drain_queue(scripts, keys, include_delayed, 1_000) == 0
    assert await events(redis, keys) == [{"event": "drained"}]


async def test_drain_queue_works_in_batches(
    redis: aioredis.Redis, scripts: ScriptRegistry, keys: QueueKeys
) -> None:
    for _ in range(5):
        await add(scripts, keys)
    assert await commands.drain_queue(scripts, keys, False, 2) == 2
    assert await commands.drain_queue(scripts, keys, False, 2) == 2
    assert await commands.drain_queue(scripts, keys, False, 2) == 1
    assert await commands.drain_queue(scripts, keys, False, 2) == 0
    assert not await redis.exists(keys.wait)


async def test_obliterate_refuses_locked_jobs_unless_forced_and_leaves_no_keys(
    redis: aioredis.Redis, scripts: ScriptRegistry, keys: QueueKeys
) -> None:
    await finish(scripts, keys, "completed")
    await finish(scripts, keys, "failed")
    for _ in range(3):
        await add(scripts, keys)
    held = await take_one(scripts, keys)
    await add(scripts, keys, priority=2)
    await add(scripts, keys, delay=60_000)
    await redis.rpush(keys.logs(held.id), "log")
    await commands.recover_stalled(scripts, keys, 1, 60_000)  # stalled + stalled-check keys
    await redis.zadd(keys.workers, {"w1": 1})
    before = await keys_left(redis, keys)

    assert await commands.obliterate_queue(scripts, keys, False, 1_000) == -8
    assert await keys_left(redis, keys) == before  # nothing touched

    removed = []
    while (n := await commands.obliterate_queue(scripts, keys, True, 2)) > 0:
        assert n <= 2
        removed.append(n)
    assert sum(removed) == 7
    # per-minute metrics keys are left to Queue.obliterate's final SCAN sweep
    left = await keys_left(redis, keys)
    assert [k for k in left if not k.startswith(keys.metrics_prefix)] == []


async def test_obliterate_without_force_when_no_lock_is_held(
    redis: aioredis.Redis, scripts: ScriptRegistry, keys: QueueKeys
) -> None:
    await add(scripts, keys)
    stale = await add(scripts, keys)
    await take_one(scripts, keys)
    await redis.delete(keys.lock("1"))  # the active job's worker is gone

    assert await commands.obliterate_queue(scripts, keys, False, 1_000) == 2
    assert await commands.obliterate_queue(scripts, keys, False, 1_000) == 0
    assert not await redis.exists(keys.job(stale))
    assert await keys_left(redis, keys) == []


# ---- the scripts themselves ----------------------------------------------------------------


@pytest.mark.parametrize("name", SCRIPT_NAMES)
def test_every_script_has_a_header(name: str) -> None:
    text = (files("engine.scripts") / f"{name}.lua").read_text(encoding="utf-8")
    assert text.startswith("#!lua\n")
    header = re.search(r"--\[\[(.*?)\]\]", text, re.DOTALL)
    assert header is not None, f"{name}.lua has no --[[ ]] header"
    body = header.group(1)
    assert body.strip().startswith(f"{name}:")
    for word in ("KEYS", "ARGV", "returns", "events"):
        assert re.search(rf"^\s*{word}\b", body, re.MULTILINE), f"{name}.lua: no {word} line"


def test_every_script_file_is_registered() -> None:
    on_disk = {
        p.name.removesuffix(".lua")
        for p in files("engine.scripts").iterdir()
        if p.name.endswith(".lua") and not p.name.startswith("_")
    }
    assert on_disk == set(SCRIPT_NAMES)


async def test_script_flush_is_survived(
    redis: aioredis.Redis, scripts: ScriptRegistry, keys: QueueKeys, queue_name: str
) -> None:
    async with Queue(queue_name, redis) as queue:
        await queue.add("a")
        await redis.script_flush()
        await queue.add("b")
        await redis.script_flush()
        await queue.add_bulk([("c", 1), ("d", 2)])
        await redis.script_flush()
        assert await queue.pause()
        assert await queue.get_counts("paused") == {"paused": 4}
    await redis.script_flush()
    assert await commands.resume_queue(scripts, keys)
    assert await list_items(redis, keys.wait) == ["4", "3", "2", "1"]
