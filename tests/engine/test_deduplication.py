"""Deduplication on a real server: by custom job id, and by deduplication id in simple,
throttle (ttl) and debounce (replace) modes, with the events, the release rules and the
concurrent-add race (X1)."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis
from support.streams import stream_events
from support.workers import TESTS_DIR, running_worker, wait_until

from engine import Job, JobState, Queue
from engine.commands import Lease, complete_job, fail_job, move_to_active, recover_stalled
from engine.errors import InvalidJobOptions
from engine.options import Retention


@pytest.fixture
async def queue(queue_name: str, redis_url: str) -> AsyncIterator[Queue]:
    async with Queue(queue_name, redis_url) as q:
        yield q


async def take(queue: Queue, lock_ms: int = 30_000) -> tuple[str, str]:
    taken = await move_to_active(queue.scripts, queue.keys, Lease("tok", lock_ms, "w", 1))
    assert len(taken.jobs) == 1
    return taken.jobs[0].id, taken.jobs[0].token


async def total_jobs(queue: Queue) -> int:
    return sum((await queue.get_counts()).values())


async def run_all(queue: Queue, queue_name: str, redis_url: str, **options: Any) -> list[Job]:
    """Run every ready job with a worker until none is left; the jobs it ran."""
    ran: list[Job] = []

    async def process(job: Job) -> None:
        ran.append(job)

    async with running_worker(queue_name, process, redis_url, **options):

        async def idle() -> bool:
            counts = await queue.get_counts("wait", "active", "delayed", "prioritized")
            return sum(counts.values()) == 0

        await wait_until(idle, within=20)
    return ran


# ---- by custom job id --------------------------------------------------------------------


async def test_custom_id_duplicate_emits_duplicated_naming_the_job(
    queue: Queue, redis: aioredis.Redis
) -> None:
    first = await queue.add("a", 1, job_id="order-7")
    again = await queue.add("b", 2, job_id="order-7")
    assert (again.id, again.data, again.deduplicated) == ("order-7", 1, False)
    assert first.id == "order-7"
    duplicated = await stream_events(redis, queue.name, "duplicated")
    assert [e["job_id"] for e in duplicated] == ["order-7"]
    assert await total_jobs(queue) == 1


# ---- simple mode -------------------------------------------------------------------------


async def test_simple_mode_returns_the_holder_until_it_finishes(
    queue: Queue, queue_name: str, redis_url: str, redis: aioredis.Redis
) -> None:
    first = await queue.add("mail", {"to": "a"}, deduplication={"id": "user-1"})
    again = await queue.add("mail", {"to": "b"}, deduplication={"id": "user-1"})
    refused = await queue.add("mail", {"to": "c"}, job_id="mine", deduplication={"id": "user-1"})
    assert first.deduplicated is False
    assert (again.id, again.data, again.deduplicated) == (first.id, {"to": "a"}, True)
    assert again.state is JobState.WAIT
    assert (refused.id, refused.deduplicated) == (first.id, True)
    assert await queue.get_job("mine") is None
    assert await total_jobs(queue) == 1
    assert await queue.get_deduplication_job_id("user-1") == first.id
    events = await stream_events(redis, queue_name, "deduplicated")
    assert [(e["job_id"], e["deduplication_id"], e.get("deduplicated_job_id")) for e in events] == [
        (first.id, "user-1", None),
        (first.id, "user-1", "mine"),
    ]
    assert first.opts["deduplication"] == {"id": "user-1"}

    await run_all(queue, queue_name, redis_url)
    assert await queue.get_deduplication_job_id("user-1") is None
    later = await queue.add("mail", {"to": "d"}, deduplication={"id": "user-1"})
    assert later.id != first.id
    assert later.deduplicated is False


async def test_simple_mode_is_released_when_the_job_is_deleted_on_completion(
    queue: Queue, queue_name: str, redis_url: str
) -> None:
    await queue.add("x", 1, remove_on_complete=True, deduplication={"id": "k"})
    await run_all(queue, queue_name, redis_url)
    assert await queue.get_deduplication_job_id("k") is None
    assert (await queue.add("x", 2, deduplication={"id": "k"})).deduplicated is False


async def test_simple_mode_holds_through_retries_and_is_released_on_final_failure(
    queue: Queue,
) -> None:
    job = await queue.add("x", 1, attempts=2, deduplication={"id": "k"})
    job_id, token = await take(queue)
    await fail_job(queue.scripts, queue.keys, job_id, token, "boom", "[]", 0, Retention())
    assert await queue.get_deduplication_job_id("k") == job.id  # retrying: still held
    assert (await queue.add("x", 2, deduplication={"id": "k"})).deduplicated is True
    job_id, token = await take(queue)
    await fail_job(queue.scripts, queue.keys, job_id, token, "boom", "[]", -1, Retention())
    assert await queue.get_job_state(job.id) is JobState.FAILED
    assert await queue.get_deduplication_job_id("k") is None


async def test_simple_mode_is_released_when_the_job_fails_for_stalling(queue: Queue) -> None:
    job = await queue.add("x", 1, deduplication={"id": "k"})
    await take(queue, lock_ms=1)
    await recover_stalled(queue.scripts, queue.keys, 0, 1)  # mark
    await asyncio.sleep(0.02)
    _, failed = await recover_stalled(queue.scripts, queue.keys, 0, 1)  # sweep
    assert failed == [job.id]
    assert await queue.get_deduplication_job_id("k") is None


async def test_removing_the_holder_frees_the_id(queue: Queue) -> None:
    job = await queue.add("x", 1, deduplication={"id": "k", "ttl": 60_000})
    await queue.remove_job(job.id)
    assert await queue.get_deduplication_job_id("k") is None
    assert (await queue.add("x", 2, deduplication={"id": "k"})).deduplicated is False


async def test_a_holder_deleted_without_release_does_not_block_the_id(queue: Queue) -> None:
    job = await queue.add("x", 1, deduplication={"id": "k"})
    await queue.drain()  # drain deletes jobs without touching their deduplication ids
    assert await queue.get_deduplication_job_id("k") == job.id  # a stale key is left
    fresh = await queue.add("x", 2, deduplication={"id": "k"})
    assert fresh.deduplicated is False
    assert await queue.get_deduplication_job_id("k") == fresh.id


# ---- throttle mode -----------------------------------------------------------------------


async def test_throttle_mode_holds_for_the_ttl_even_after_the_job_ends(queue: Queue) -> None:
    first = await queue.add("sync", 1, deduplication={"id": "t", "ttl": 1_500})
    job_id, token = await take(queue)
    await complete_job(queue.scripts, queue.keys, job_id, token, "null", Retention())
    within = await queue.add("sync", 2, deduplication={"id": "t", "ttl": 1_500})
    assert (within.id, within.deduplicated, within.state) == (first.id, True, JobState.COMPLETED)

    async def expired() -> bool:
        return await queue.get_deduplication_job_id("t") is None

    await wait_until(expired, within=10)
    after = await queue.add("sync", 3, deduplication={"id": "t", "ttl": 1_500})
    assert after.deduplicated is False
    assert after.id != first.id


async def test_throttle_mode_when_the_holder_is_gone_returns_its_id_only(
    queue: Queue, queue_name: str, redis_url: str
) -> None:
    first = await queue.add(
        "sync", 1, remove_on_complete=True, deduplication={"id": "t", "ttl": 60_000}
    )
    await run_all(queue, queue_name, redis_url)
    again = await queue.add("sync", 2, deduplication={"id": "t", "ttl": 60_000})
    assert (again.id, again.deduplicated, again.state, again.data) == (first.id, True, None, None)
    assert await total_jobs(queue) == 0


async def test_extend_restarts_the_ttl_on_each_deduplicated_add(
    queue: Queue, redis: aioredis.Redis
) -> None:
    key = queue.keys.dedup("e")
    await queue.add("x", 1, deduplication={"id": "e", "ttl": 2_000, "extend": True})
    await asyncio.sleep(0.5)
    await queue.add("x", 2, deduplication={"id": "e", "ttl": 2_000})  # no extend
    assert await redis.pttl(key) <= 1_600
    await queue.add("x", 3, deduplication={"id": "e", "ttl": 2_000, "extend": True})
    assert await redis.pttl(key) > 1_800
    assert await total_jobs(queue) == 1


# ---- debounce mode -----------------------------------------------------------------------


async def test_debounce_replaces_the_delayed_job_so_the_last_add_runs(
    queue: Queue, queue_name: str, redis_url: str, redis: aioredis.Redis
) -> None:
    debounce = {"id": "search", "ttl": 2_000, "extend": True, "replace": True}
    jobs = [await queue.add("index", {"q": q}, delay=1_000, deduplication=debounce) for q in "abc"]
    assert [j.deduplicated for j in jobs] == [False, False, False]
    assert len({j.id for j in jobs}) == 3
    assert await queue.get_job_ids("delayed") == [jobs[2].id]
    assert await queue.get_job(jobs[0].id) is None
    assert await queue.get_deduplication_job_id("search") == jobs[2].id
    assert await redis.pttl(queue.keys.dedup("search")) > 1_500  # extended by the last add
    removed = await stream_events(redis, queue_name, "removed")
    assert [(e["job_id"], e["prev"]) for e in removed] == [
        (jobs[0].id, "delayed"),
        (jobs[1].id, "delayed"),
    ]
    events = await stream_events(redis, queue_name, "deduplicated")
    assert [(e["job_id"], e["deduplicated_job_id"]) for e in events] == [
        (jobs[1].id, jobs[0].id),
        (jobs[2].id, jobs[1].id),
    ]
    ran = await run_all(queue, queue_name, redis_url, block_timeout=0.2)
    assert [job.data for job in ran] == [{"q": "c"}]


async def test_replace_keeps_a_holder_that_is_no_longer_delayed(queue: Queue) -> None:
    debounce = {"id": "d", "ttl": 60_000, "replace": True}
    first = await queue.add("x", 1, deduplication=debounce)  # no delay: it waits, ready
    again = await queue.add("x", 2, deduplication=debounce)
    assert (again.id, again.deduplicated, again.data) == (first.id, True, 1)
    assert await total_jobs(queue) == 1


# ---- keys, bulk, validation --------------------------------------------------------------


async def test_remove_deduplication_key(queue: Queue) -> None:
    job = await queue.add("x", 1, deduplication={"id": "k"})
    assert await queue.remove_deduplication_key("k", job_id="someone-else") is False
    assert await queue.remove_deduplication_key("k", job_id=job.id) is True
    assert await queue.remove_deduplication_key("k") is False
    assert (await queue.add("x", 2, deduplication={"id": "k"})).deduplicated is False
    assert await queue.remove_deduplication_key("k") is True
    assert await total_jobs(queue) == 2


async def test_add_bulk_deduplicates_within_and_across_calls(queue: Queue) -> None:
    jobs = await queue.add_bulk(
        [
            ("x", 1, {"deduplication": {"id": "k"}}),
            ("x", 2, {"deduplication": {"id": "k"}}),
            ("y", 3),
        ]
    )
    assert [j.deduplicated for j in jobs] == [False, True, False]
    assert jobs[1].id == jobs[0].id
    assert jobs[1].data == 1
    assert await total_jobs(queue) == 2


@pytest.mark.parametrize(
    ("dedup", "message"),
    [
        ("k", "expected a dict"),
        ({}, "needs an 'id'"),
        ({"id": ""}, "id='' is invalid"),
        ({"id": "a\nb"}, "is invalid"),
        ({"id": 5}, "id=5 is invalid"),
        ({"id": "k", "ttl": 0}, "ttl=0 is invalid"),
        ({"id": "k", "ttl": 1.5}, "ttl=1.5 is invalid"),
        ({"id": "k", "extend": True}, "needs a ttl"),
        ({"id": "k", "replace": "yes"}, "replace='yes' is invalid"),
        ({"id": "k", "mode": "x"}, "unknown keys"),
    ],
)
async def test_bad_deduplication_options_are_refused(
    queue: Queue, redis: aioredis.Redis, dedup: Any, message: str
) -> None:
    with pytest.raises(InvalidJobOptions, match=message):
        await queue.add("x", 1, deduplication=dedup)
    assert [k async for k in redis.scan_iter(match=queue.keys.base + ":*")] == []


# ---- X1: the race ------------------------------------------------------------------------


@pytest.mark.timeout(180)
async def test_concurrent_adds_with_one_dedup_id_make_one_job(
    queue: Queue, queue_name: str, redis_url: str, redis: aioredis.Redis
) -> None:
    """X1: 10,000 adds with the same deduplication id from 50 connections in 5 processes."""
    start_at = time.time() + 3.0  # every process starts adding at the same moment
    args = ["-m", "support.dedup_adders", redis_url, queue_name, "x1", "10", "2000", str(start_at)]
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable, *args, cwd=TESTS_DIR, stdout=asyncio.subprocess.PIPE
        )
        for _ in range(5)
    ]
    try:
        outputs = await asyncio.wait_for(asyncio.gather(*(p.communicate() for p in procs)), 150)
    finally:
        for p in procs:
            if p.returncode is None:
                p.kill()
                await p.wait()
    assert [p.returncode for p in procs] == [0] * 5
    summaries = [json.loads(out.decode().strip().splitlines()[-1]) for out, _ in outputs]
    created = [job_id for s in summaries for job_id in s["created"]]
    ids: Counter[str] = Counter()
    for s in summaries:
        ids.update(s["ids"])
    assert len(created) == 1
    assert sum(s["deduplicated"] for s in summaries) == 9_999
    assert ids == Counter({created[0]: 10_000})
    assert await queue.get_job_ids("wait", 0, -1) == created
    assert await total_jobs(queue) == 1
    hashes = [k async for k in redis.scan_iter(match=queue.keys.job_prefix + "*")]
    assert hashes == [queue.keys.job(created[0])]
    assert len(await stream_events(redis, queue_name, "deduplicated")) == 9_999

    await run_all(queue, queue_name, redis_url)  # released on completion
    assert await queue.get_deduplication_job_id("x1") is None
    after = await queue.add("race", {}, deduplication={"id": "x1"})
    assert after.deduplicated is False
    assert after.id != created[0]
