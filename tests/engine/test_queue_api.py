"""The ``Queue`` producer and admin API against a real server.

Jobs are moved through active/completed/failed with the scripts a worker uses
(``engine.commands``), so these tests need no running worker.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis
from support.streams import stream_events

from engine import FlowProducer, commands
from engine.commands import Lease
from engine.errors import InvalidJobOptions, JobNotFound, JobStateError
from engine.job import ALL_STATES, JobState
from engine.keys import QueueKeys
from engine.options import Retention
from engine.queue import BULK_PIECE, Queue
from engine.scripts import script_source


@pytest.fixture
async def queue(queue_name: str, redis_url: str) -> AsyncIterator[Queue]:
    async with Queue(queue_name, redis_url) as q:
        yield q


async def take(queue: Queue, count: int = 1) -> list[tuple[str, str]]:
    """Make up to ``count`` ready jobs active, as a worker would; (id, token) pairs."""
    taken = await commands.move_to_active(
        queue.scripts, queue.keys, Lease("tok-api", 30_000, "w-api", count)
    )
    return [(job.id, job.token) for job in taken.jobs]


async def finish(queue: Queue, outcome: str, count: int = 1, value: str = '"ok"') -> list[str]:
    """Add ``count`` jobs and complete or fail each for good, in order; return their ids."""
    ids = [(await queue.add(f"{outcome}-{i}", i)).id for i in range(count)]
    for job_id in ids:
        (taken_id, token), *_ = await take(queue)
        assert taken_id == job_id, "finish() needs a queue with nothing else ready"
        if outcome == "completed":
            await commands.complete_job(
                queue.scripts, queue.keys, job_id, token, value, Retention()
            )
        else:
            await commands.fail_job(
                queue.scripts, queue.keys, job_id, token, "boom", '["tb"]', -1, Retention()
            )
        await asyncio.sleep(0.002)  # distinct finish times, so newest-first is well defined
    return ids


async def keys_left(redis: aioredis.Redis, queue: Queue) -> list[str]:
    return sorted([k async for k in redis.scan_iter(match=queue.keys.base + ":*", count=1000)])


async def event_kinds(redis: aioredis.Redis, queue: Queue) -> list[str]:
    entries = await redis.xrange(queue.keys.events) or []
    return [str((fields or {}).get("event")) for _id, fields in entries]


# ---- adding --------------------------------------------------------------------------------


async def test_add_returns_the_stored_job(queue: Queue) -> None:
    job = await queue.add("email", {"to": "a@example.com", "n": [1, 2.5, None]}, attempts=3)

    assert job.id == "1"
    assert job.name == "email"
    assert job.queue == queue.name
    assert job.data == {"to": "a@example.com", "n": [1, 2.5, None]}
    assert job.attempts == 3
    assert job.opts["attempts"] == 3
    assert job.state is JobState.WAIT
    assert job.timestamp > 0
    assert (await queue.add("email")).id == "2"


async def test_add_with_options_lands_in_the_right_state(queue: Queue) -> None:
    delayed = await queue.add("d", delay=60_000)
    prioritized = await queue.add("p", priority=3)

    assert delayed.state is JobState.DELAYED
    assert delayed.delay == 60_000
    assert prioritized.state is JobState.PRIORITIZED
    assert prioritized.priority == 3


async def test_the_returned_job_equals_the_stored_one(queue: Queue) -> None:
    """``add`` builds its answer from what it sent and the script's reply; check it against
    a read of the hash, for every state a new job can land in."""
    cases: list[tuple[str, Any, dict[str, Any]]] = [
        ("w", {"k": (1, 2)}, {"attempts": 2}),
        ("p", None, {"priority": 2}),
        ("d", [], {"delay": 60_000}),
        ("paused", "x", {}),
    ]
    for name, data, options in cases:
        if name == "paused":
            await queue.pause()
        job = await queue.add(name, data, **options)
        assert job == await queue.get_job(job.id)


async def test_add_is_one_round_trip(redis: aioredis.Redis, queue: Queue) -> None:
    await queue.add("warm-up")
    before = await redis.info("commandstats")
    await queue.add("one", {"a": 1})
    after = await redis.info("commandstats")
    calls = {
        name.removeprefix("cmdstat_"): int(after[name]["calls"])
        - int(before.get(name, {}).get("calls", 0))
        for name in after
        if int(after[name]["calls"]) != int(before.get(name, {}).get("calls", 0))
    }
    # (commandstats also counts the commands the script runs inside the server)
    assert calls["evalsha"] == 1
    assert not {"hgetall", "zscore", "lpos"} & set(calls)  # no read-back after the add


async def test_add_bulk_keeps_order_and_options(redis: aioredis.Redis, queue: Queue) -> None:
    # the add script loaded already (a first call on a fresh server is a NOSCRIPT and a retry)
    await redis.script_load(script_source("add_jobs"))
    before = await redis.info("commandstats")
    jobs = await queue.add_bulk(
        [
            ("a", 1),
            ("b", {"x": 2}, {"priority": 2}),
            ("c", None, {"job_id": "custom-c"}),
            ("d", [4], {"delay": 60_000}),
            ("e", "five"),
        ]
    )
    after = await redis.info("commandstats")

    assert [j.id for j in jobs] == ["1", "2", "custom-c", "3", "4"]
    assert [j.name for j in jobs] == ["a", "b", "c", "d", "e"]
    assert [j.data for j in jobs] == [1, {"x": 2}, None, [4], "five"]
    assert await queue.get_job_ids("wait") == ["4", "custom-c", "1"]  # newest first
    assert await queue.get_job_ids("prioritized") == ["2"]
    assert await queue.get_job_ids("delayed") == ["3"]

    def calls(stats: dict[str, dict[str, int]], cmd: str) -> int:
        return int(stats.get(f"cmdstat_{cmd}", {}).get("calls", 0))

    # one script call for the five jobs (add_jobs), no per-job round trips or checks
    scripted = sum(calls(after, c) - calls(before, c) for c in ("evalsha", "eval"))
    assert scripted == 1
    assert await queue.add_bulk([]) == []


async def test_a_big_add_bulk_sent_in_pieces_keeps_order_ids_and_duplicates(
    queue: Queue,
) -> None:
    """More items than one piece (``BULK_PIECE``): the jobs come back in the order given, a
    custom id repeated in a later piece returns the job the earlier piece added."""
    count = BULK_PIECE * 3 + 7
    items: list[tuple[str, Any, dict[str, Any]]] = [("n", i, {}) for i in range(count)]
    items[BULK_PIECE + 5] = ("dup", "later", {"job_id": "same"})
    items[3] = ("dup", "first", {"job_id": "same"})
    jobs = await queue.add_bulk(items)
    assert len(jobs) == count
    assert [j.data for j in jobs[:3]] == [0, 1, 2]
    assert jobs[3].id == jobs[BULK_PIECE + 5].id == "same"
    assert jobs[BULK_PIECE + 5].data == "first"
    numbered = [j for j in jobs if j.id != "same"]
    assert [int(j.id) for j in numbered] == list(range(1, count - 1))
    assert await queue.get_counts("wait") == {"wait": count - 1}


async def test_a_big_add_bulk_that_the_server_refuses_raises_and_leaks_no_task(
    redis: aioredis.Redis, queue: Queue
) -> None:
    """Every piece fails on a key of the wrong type: the server's error is raised, once every
    piece has answered (no piece left running unobserved)."""
    await queue.add("first", {})
    await redis.delete(queue.keys.wait)
    await redis.set(queue.keys.wait, "not a list")
    with pytest.raises(aioredis.ResponseError, match="WRONGTYPE"):
        await queue.add_bulk([("n", i) for i in range(BULK_PIECE * 2 + 1)])
    pending = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    assert not [t for t in pending if "_add_all" in repr(t.get_coro())]


async def test_add_bulk_rejects_bad_items_before_writing(
    redis: aioredis.Redis, queue: Queue
) -> None:
    with pytest.raises(InvalidJobOptions, match="item 1"):
        await queue.add_bulk([("a", 1), ("b",)])  # type: ignore[list-item]
    with pytest.raises(InvalidJobOptions, match="options must be a dict"):
        await queue.add_bulk([("a", 1, ["not", "a", "dict"])])  # type: ignore[list-item]
    assert await keys_left(redis, queue) == []


async def test_custom_job_id_returns_the_existing_job(redis: aioredis.Redis, queue: Queue) -> None:
    first = await queue.add("first", {"v": 1}, job_id="invoice-42")
    again = await queue.add("second", {"v": 2}, job_id="invoice-42", delay=5_000)
    bulk = await queue.add_bulk([("third", {"v": 3}, {"job_id": "invoice-42"})])

    assert first.id == again.id == bulk[0].id == "invoice-42"
    assert again.name == "first"
    assert again.data == {"v": 1}
    assert again.state is JobState.WAIT
    assert bulk[0].name == "first"
    assert await queue.get_counts("wait", "delayed") == {"wait": 1, "delayed": 0}
    assert (await event_kinds(redis, queue)).count("duplicated") == 2


async def test_a_duplicate_add_returns_the_existing_job_in_the_state_it_is_in(
    redis_url: str, queue_name: str, queue: Queue
) -> None:
    """A duplicate add finds the existing job's state without scanning the wait list (a job
    in no sorted set is in wait, or in paused while the queue is paused): in every state it
    is the one ``get_job_state`` finds by scanning, for ``add`` and ``add_bulk`` alike, with
    the existing job's fields, and a job deep in a long wait list too."""
    for job_id in ("to-complete", "to-fail", "to-run"):
        await queue.add(job_id, {"id": job_id}, job_id=job_id)
    (done, done_token), (failed, failed_token), _running = await take(queue, 3)
    await commands.complete_job(queue.scripts, queue.keys, done, done_token, '"ok"', Retention())
    await commands.fail_job(
        queue.scripts, queue.keys, failed, failed_token, "boom", '["tb"]', -1, Retention()
    )
    await queue.add("deep", {"id": "deep"}, job_id="deep")
    await queue.add_bulk([("filler", i) for i in range(2_000)])  # "deep" is last of 2,001
    await queue.add("later", {"id": "later"}, job_id="later", delay=60_000)
    await queue.add("first", {"id": "first"}, job_id="first", priority=3)
    async with FlowProducer(redis_url) as producer:
        await producer.add(
            {
                "name": "parent",
                "queue": queue_name,
                "data": {"id": "parent"},
                "opts": {"job_id": "parent"},
                "children": [{"name": "child", "queue": queue_name, "data": {}}],
            }
        )
    expected = {
        "to-complete": JobState.COMPLETED,
        "to-fail": JobState.FAILED,
        "to-run": JobState.ACTIVE,
        "deep": JobState.WAIT,
        "later": JobState.DELAYED,
        "first": JobState.PRIORITIZED,
        "parent": JobState.WAITING_CHILDREN,
    }

    async def check(expected: dict[str, JobState]) -> None:
        singles = [await queue.add("again", {"v": 2}, job_id=job_id) for job_id in expected]
        bulk = await queue.add_bulk([("again", {"v": 2}, {"job_id": j}) for j in expected])
        for job_id, single, from_bulk in zip(expected, singles, bulk, strict=True):
            assert await queue.get_job_state(job_id) is expected[job_id]
            assert single.state is from_bulk.state is expected[job_id], job_id
            assert single.data == from_bulk.data == {"id": job_id}
            assert single == await queue.get_job(job_id)

    await check(expected)
    await queue.pause()
    await queue.add("while-paused", {"id": "while-paused"}, job_id="while-paused")
    await check({**expected, "deep": JobState.PAUSED, "while-paused": JobState.PAUSED})
    await queue.resume()
    await check({"deep": JobState.WAIT, "while-paused": JobState.WAIT})


def pooled_client(url: str) -> aioredis.Redis:
    """A client whose callers wait for one of 50 connections instead of failing."""
    pool = aioredis.BlockingConnectionPool.from_url(
        url, max_connections=50, timeout=20, decode_responses=True
    )
    return aioredis.Redis(connection_pool=pool)


async def test_concurrent_duplicate_custom_ids_make_exactly_one_job_each(
    redis: aioredis.Redis, queue_name: str, redis_url: str
) -> None:
    """X2: distinct custom ids, each added twice at the same time, once with ``add`` (all the
    calls concurrent over a pool of 50 connections) and once with ``add_bulk`` (two concurrent
    bulks): exactly one job per id, holding the data of its id, and every call returns it.

    The plan's 10,000 ids. An add that finds its id taken reads the existing job back with its
    state in O(log n) (``read_existing_jobs``: no LPOS over the wait list), so the cost grows
    with the ids, not with their square.
    """
    count = 10_000
    ids = [f"user-{i:05d}" for i in range(count)]
    # one added event and one duplicated event per id: keep them all to count them
    max_events = 4 * count
    one, two = pooled_client(redis_url), pooled_client(redis_url)
    try:
        singles_queue = Queue(queue_name, one, max_events=max_events)
        bulk_queue = Queue(queue_name, two, max_events=max_events)
        singles = asyncio.gather(*(singles_queue.add("sync", {"id": i}, job_id=i) for i in ids))
        bulk_a = bulk_queue.add_bulk([("sync", {"id": i}, {"job_id": i}) for i in ids[::2]])
        bulk_b = bulk_queue.add_bulk([("sync", {"id": i}, {"job_id": i}) for i in ids[1::2]])
        added, from_a, from_b = await asyncio.gather(singles, bulk_a, bulk_b)
        counts = await singles_queue.get_counts()
        waiting = await singles_queue.get_job_ids("wait", 0, 2 * count)
    finally:
        await one.aclose()
        await two.aclose()

    assert sorted(j.id for j in added) == ids
    assert sorted(j.id for j in [*from_a, *from_b]) == ids
    assert all(j.data == {"id": j.id} for j in [*added, *from_a, *from_b])
    assert counts["wait"] == count
    assert sum(counts.values()) == count
    assert sorted(waiting) == ids
    keys = QueueKeys(queue_name)
    assert len([k async for k in redis.scan_iter(match=keys.job_prefix + "*", count=5_000)]) == (
        count
    )
    entries = await redis.xrange(keys.events) or []
    kinds = [str((fields or {}).get("event")) for _id, fields in entries]
    assert kinds.count("added") == count
    assert kinds.count("duplicated") == count
    assert not await redis.exists(keys.id)


async def test_many_concurrent_adds_on_a_queue_built_from_a_url(queue: Queue) -> None:
    """More concurrent calls than pooled connections wait for one instead of failing."""
    jobs = await asyncio.gather(*(queue.add("burst", i) for i in range(300)))
    assert len({j.id for j in jobs}) == 300


# ---- reading -------------------------------------------------------------------------------


async def test_get_counts_covers_every_state(queue: Queue) -> None:
    assert await queue.get_counts() == {s.value: 0 for s in ALL_STATES}
    await finish(queue, "completed", 2)
    await finish(queue, "failed", 1)
    await queue.add("w")
    await take(queue)
    for _ in range(3):
        await queue.add("w")
    await queue.add("p", priority=1)
    await queue.add("d", delay=60_000)
    await queue.add("d", delay=60_000)
    await queue.client.zadd(queue.keys.waiting_children, {"parent-1": 1})

    counts = await queue.get_counts()

    assert counts == {
        "wait": 3,
        "active": 1,
        "delayed": 2,
        "prioritized": 1,
        "failed": 1,
        "completed": 2,
        "paused": 0,
        "waiting-children": 1,
    }
    await queue.pause()
    assert await queue.get_counts("wait", JobState.PAUSED) == {"wait": 0, "paused": 3}
    with pytest.raises(InvalidJobOptions, match="state='nope'"):
        await queue.get_counts("nope")


async def test_get_job_sets_the_state(queue: Queue) -> None:
    done = (await finish(queue, "completed", value='{"r":1}'))[0]
    failed = (await finish(queue, "failed"))[0]
    active = (await queue.add("a")).id
    await take(queue)
    waiting = (await queue.add("w")).id
    delayed = (await queue.add("d", delay=60_000)).id
    prioritized = (await queue.add("p", priority=9)).id

    expected = {
        done: JobState.COMPLETED,
        failed: JobState.FAILED,
        active: JobState.ACTIVE,
        waiting: JobState.WAIT,
        delayed: JobState.DELAYED,
        prioritized: JobState.PRIORITIZED,
    }
    for job_id, state in expected.items():
        job = await queue.get_job(job_id)
        assert job is not None
        assert job.state is state
        assert await queue.get_job_state(job_id) is state

    done_job = await queue.get_job(done)
    assert done_job is not None
    assert done_job.returnvalue == {"r": 1}
    assert done_job.attempts_made == 1
    assert done_job.finished_on is not None
    failed_job = await queue.get_job(failed)
    assert failed_job is not None
    assert failed_job.failed_reason == "boom"
    assert failed_job.stacktrace == ["tb"]
    active_job = await queue.get_job(active)
    assert active_job is not None
    assert active_job.worker == "w-api"
    assert active_job.attempts_started == 1

    await queue.pause()
    assert await queue.get_job_state(waiting) is JobState.PAUSED
    assert await queue.get_job("missing") is None
    assert await queue.get_job_state("missing") is None


async def test_get_jobs_pages_through_each_state(queue: Queue) -> None:
    completed = await finish(queue, "completed", 5)
    failed = await finish(queue, "failed", 5)
    wait = [(await queue.add("w", i)).id for i in range(5)]
    active = [job_id for job_id, _token in await take(queue, 2)]
    wait = wait[2:]
    delayed = [(await queue.add("d", i, delay=60_000 - i * 1_000)).id for i in range(5)]
    prioritized = [(await queue.add("p", i, priority=5 - i)).id for i in range(5)]

    async def pages(state: str, size: int, total: int) -> list[str]:
        out: list[str] = []
        for start in range(0, total + size, size):
            page = await queue.get_jobs(state, start, start + size - 1)
            assert len(page) <= size
            assert all(j.state == state for j in page)
            out += [j.id for j in page]
        return out

    assert await pages("completed", 2, 5) == completed[::-1]  # newest first
    assert await pages("failed", 2, 5) == failed[::-1]
    assert await pages("wait", 2, 3) == wait[::-1]  # newest first
    assert await pages("active", 1, 2) == active
    assert await pages("delayed", 2, 5) == delayed[::-1]  # soonest due first
    assert await pages("prioritized", 2, 5) == prioritized[::-1]  # in run order
    assert await queue.get_jobs("completed", 10, 20) == []
    with pytest.raises(InvalidJobOptions):
        await queue.get_jobs("completed", -1, 5)


async def test_parents_waiting_for_their_children_are_listed(
    queue: Queue, queue_name: str, redis_url: str
) -> None:
    """A flow's parent is in waiting-children until its children finish: the listings of that
    state return it (oldest waiting first), and its children are in wait, not there."""
    async with FlowProducer(redis_url) as producer:
        for parent in ("p1", "p2"):
            await producer.add(
                {
                    "name": "parent",
                    "queue": queue_name,
                    "data": {"id": parent},
                    "opts": {"job_id": parent},
                    "children": [
                        {"name": "child", "queue": queue_name, "data": {"of": parent}},
                        {"name": "child", "queue": queue_name, "data": {"of": parent}},
                    ],
                }
            )
            await asyncio.sleep(0.002)  # distinct scores, so "oldest first" is well defined

    assert await queue.get_job_ids("waiting-children") == ["p1", "p2"]
    assert await queue.get_job_ids(JobState.WAITING_CHILDREN, 1, 1) == ["p2"]
    parents = await queue.get_jobs("waiting-children")
    assert [(j.id, j.name, j.data, j.state) for j in parents] == [
        ("p1", "parent", {"id": "p1"}, JobState.WAITING_CHILDREN),
        ("p2", "parent", {"id": "p2"}, JobState.WAITING_CHILDREN),
    ]
    assert await queue.get_job_state("p1") is JobState.WAITING_CHILDREN
    assert await queue.get_counts("waiting-children", "wait") == {"waiting-children": 2, "wait": 4}
    waiting = await queue.get_jobs("wait")
    assert {j.name for j in waiting} == {"child"} and not {"p1", "p2"} & {j.id for j in waiting}


# ---- managing ------------------------------------------------------------------------------


async def test_pause_resume_is_paused(redis: aioredis.Redis, queue: Queue) -> None:
    await queue.add("a")
    assert await queue.is_paused() is False
    assert await queue.pause() is True
    assert await queue.pause() is False
    assert await queue.is_paused() is True
    assert (await queue.add("b")).state is JobState.PAUSED
    assert [j.id for j in await queue.get_jobs("paused")] == ["2", "1"]
    assert await take(queue) == []
    assert await queue.resume() is True
    assert await queue.resume() is False
    assert await queue.is_paused() is False
    assert await queue.get_counts("wait", "paused") == {"wait": 2, "paused": 0}
    assert [job_id for job_id, _ in await take(queue, 5)] == ["1", "2"]
    assert [k for k in await event_kinds(redis, queue) if k in ("paused", "resumed")] == [
        "paused",
        "resumed",
    ]


async def test_retry_job(queue: Queue) -> None:
    (failed,) = await finish(queue, "failed")

    await queue.retry_job(failed)

    job = await queue.get_job(failed)
    assert job is not None
    assert job.state is JobState.WAIT
    assert job.attempts_made == 0
    assert job.failed_reason is None
    with pytest.raises(JobStateError, match="now wait") as info:
        await queue.retry_job(failed)
    assert info.value.state == "wait"
    with pytest.raises(JobNotFound):
        await queue.retry_job("missing")
    with pytest.raises(InvalidJobOptions):
        await queue.retry_job(failed, state="wait")


async def test_retry_job_names_the_state_a_job_moved_to(queue: Queue) -> None:
    (job_id,) = await finish(queue, "failed")
    # someone else retried it and a worker completed it meanwhile
    await queue.retry_job(job_id)
    (_, token), *_ = await take(queue)
    await commands.complete_job(queue.scripts, queue.keys, job_id, token, "1", Retention())

    with pytest.raises(JobStateError, match="completed") as info:
        await queue.retry_job(job_id)

    assert info.value.state == "completed"
    assert f"{job_id!r}" in str(info.value)
    await queue.retry_job(job_id, state="completed")
    assert await queue.get_job_state(job_id) is JobState.WAIT


async def test_retry_jobs_retries_all_and_honours_count(queue: Queue) -> None:
    failed = await finish(queue, "failed", 4)

    assert await queue.retry_jobs(count=1) == 1
    assert await queue.get_job_ids("wait") == [failed[0]]
    assert await queue.retry_jobs() == 3
    assert await queue.get_counts("failed", "wait") == {"failed": 0, "wait": 4}
    assert await queue.retry_jobs() == 0
    with pytest.raises(InvalidJobOptions):
        await queue.retry_jobs("active")


async def test_retry_job_ids(queue: Queue) -> None:
    failed = await finish(queue, "failed", 2)
    waiting = (await queue.add("w")).id

    assert await queue.retry_job_ids([failed[1], waiting]) == {failed[1]: True, waiting: False}
    assert await queue.get_job_ids("failed") == [failed[0]]


async def test_remove_job(redis: aioredis.Redis, queue: Queue) -> None:
    (done,) = await finish(queue, "completed")
    delayed = (await queue.add("d", delay=60_000)).id
    held = (await queue.add("a")).id
    await take(queue)
    await redis.rpush(queue.keys.logs(delayed), "line")

    assert await queue.remove_job(done) == "completed"
    assert await queue.remove_job(delayed) == "delayed"
    with pytest.raises(JobStateError) as info:
        await queue.remove_job(held)
    assert info.value.state == "active"
    with pytest.raises(JobNotFound):
        await queue.remove_job(done)

    assert await queue.get_job(done) is None
    assert await queue.get_job_logs(delayed) == []
    assert await queue.get_job_state(held) is JobState.ACTIVE


async def test_promote_job(queue: Queue) -> None:
    delayed = [(await queue.add("d", i, delay=60_000 + i)).id for i in range(3)]

    await queue.promote_job(delayed[2])
    assert await queue.get_job_state(delayed[2]) is JobState.WAIT
    with pytest.raises(JobStateError, match="now wait"):
        await queue.promote_job(delayed[2])
    with pytest.raises(JobNotFound):
        await queue.promote_job("missing")
    with pytest.raises(JobNotFound):  # not "promote every delayed job"
        await queue.promote_job("*")
    assert await queue.get_counts("delayed") == {"delayed": 2}

    assert await queue.promote_jobs() == 2
    assert await queue.get_counts("wait", "delayed") == {"wait": 3, "delayed": 0}
    assert await queue.promote_jobs() == 0


async def test_clean_by_grace_limit_and_state(redis: aioredis.Redis, queue: Queue) -> None:
    completed = await finish(queue, "completed", 5)
    failed = await finish(queue, "failed", 2)

    assert await queue.clean(60_000, 10) == []  # all finished within the grace period
    await asyncio.sleep(0.05)
    assert await queue.clean(20, 3) == completed[:3]  # oldest first, up to the limit
    assert await queue.get_job_ids("completed") == completed[:2:-1]
    assert await queue.clean(20, 10, "failed") == failed
    assert await queue.get_counts("completed", "failed") == {"completed": 2, "failed": 0}
    for job_id in [*completed[:3], *failed]:
        assert not await redis.exists(queue.keys.job(job_id))
    with pytest.raises(InvalidJobOptions):
        await queue.clean(0, 10, "wait")
    with pytest.raises(InvalidJobOptions):
        await queue.clean(-1, 10)
    with pytest.raises(InvalidJobOptions):
        await queue.clean(0, 0)


async def test_drain(redis: aioredis.Redis, queue: Queue) -> None:
    (done,) = await finish(queue, "completed")
    await queue.add("a")
    (held, _), *_ = await take(queue)
    await queue.add_bulk([("w", i) for i in range(1_200)])  # more than one batch
    await queue.add("p", priority=2)
    delayed = (await queue.add("d", delay=60_000)).id

    assert await queue.drain() == 1_201
    assert await queue.get_counts() == {
        **{s.value: 0 for s in ALL_STATES},
        "active": 1,
        "completed": 1,
        "delayed": 1,
    }
    assert await queue.get_job(delayed) is not None
    assert await queue.drain(delayed=True) == 1
    assert await queue.get_job(delayed) is None
    assert await queue.get_job_state(held) is JobState.ACTIVE
    assert await queue.get_job_state(done) is JobState.COMPLETED
    assert (await event_kinds(redis, queue)).count("drained") == 2


async def test_obliterate(redis: aioredis.Redis, queue: Queue) -> None:
    await finish(queue, "completed", 2)
    await finish(queue, "failed", 1)
    await queue.add("a")
    await take(queue)
    await queue.add_bulk([("w", i) for i in range(600)])
    await queue.add("d", delay=60_000)
    await redis.hset(queue.keys.worker("w-api"), mapping={"host": "h", "pid": "1"})
    await redis.zadd(queue.keys.workers, {"w-api": 1})

    with pytest.raises(JobStateError, match="force=True"):
        await queue.obliterate()
    assert await queue.get_counts("active") == {"active": 1}

    await queue.obliterate(force=True)

    assert await keys_left(redis, queue) == []
    assert await queue.get_counts() == {s.value: 0 for s in ALL_STATES}
    assert (await queue.add("fresh")).id == "1"  # a new queue starts over


async def test_options_equal_in_python_but_not_the_same_stay_apart(
    redis_url: str, queue_name: str
) -> None:
    """True == 1 in Python, but remove_on_fail=True removes and remove_on_fail=1 keeps one."""
    async with Queue(queue_name, redis_url) as queue:
        first = await queue.add("a", {}, remove_on_fail=True)
        second = await queue.add("a", {}, remove_on_fail=1)
        third = await queue.add("a", {}, remove_on_fail=True)
        assert first.opts == third.opts != second.opts
        stored = await queue.get_job(second.id)
        assert stored is not None and stored.opts == second.opts


@pytest.mark.parametrize("paused", [False, True])
async def test_a_bulk_add_stores_what_adds_one_by_one_store(
    redis: aioredis.Redis, redis_url: str, queue_name: str, paused: bool
) -> None:
    """add_bulk sends its jobs in add_jobs calls; each job ends up exactly as ``add`` leaves
    it: the same hash fields, state, list order and events, duplicates included."""
    items: list[tuple[str, Any, dict[str, Any]]] = [
        ("plain", {"a": 1}, {}),
        ("first", [1], {"priority": 1}),
        ("later", None, {"delay": 60_000}),
        ("front", "x", {"lifo": True}),
        ("named", 2, {"job_id": "custom"}),
        ("again", 3, {"job_id": "custom"}),
        ("tries", {}, {"attempts": 3, "remove_on_complete": True}),
    ]

    async def stored(name: str, bulk: bool) -> tuple[Any, ...]:
        async with Queue(name, redis_url) as queue:
            if paused:
                await queue.pause()
            if bulk:
                jobs = await queue.add_bulk(items)
            else:
                jobs = [await queue.add(n, d, **o) for n, d, o in items]
            keys = QueueKeys(name)
            hashes = []
            for job in jobs:
                fields = await redis.hgetall(keys.job(job.id))
                fields.pop("timestamp")
                hashes.append(fields)
            events = [
                {k: v for k, v in e.items() if k not in ("_id", "delay")}
                for e in await stream_events(redis, name)
            ]
            lists = [await redis.lrange(keys.of_state(s), 0, -1) for s in ("wait", "paused")]
            return [(j.id, j.state, j.name, j.data) for j in jobs], hashes, events, lists

    assert await stored(queue_name + "-bulk", True) == await stored(queue_name + "-one", False)
