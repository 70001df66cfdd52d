"""Removing jobs of a flow: a parent takes its subtree with it (in every queue), a removed
child leaves its parent consistent, and a subtree a worker is running is refused (F4)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis
from support.flows import flow_problems
from support.streams import stream_events
from support.workers import running_worker, wait_until

from engine import FlowProducer, Job, JobState, Queue, commands
from engine.errors import JobNotFound, JobStateError
from engine.flows import FlowNode
from engine.keys import QueueKeys
from engine.scripts import ScriptRegistry


@pytest.fixture
def other_queue() -> str:
    return "t-" + uuid.uuid4().hex[:12]


@pytest.fixture
async def producer(redis_url: str) -> AsyncIterator[FlowProducer]:
    async with FlowProducer(redis_url) as fp:
        yield fp


def three_levels(queue: str, other: str) -> dict[str, Any]:
    return {
        "name": "root",
        "queue": queue,
        "children": [
            {
                "name": "mid",
                "queue": other,
                "children": [{"name": "leaf", "queue": queue}, {"name": "leaf", "queue": other}],
            },
            {"name": "side", "queue": other},
        ],
    }


async def keys_of(redis: aioredis.Redis, queue: str) -> list[str]:
    base = QueueKeys(queue).job_prefix
    return sorted([str(k) async for k in redis.scan_iter(match=base + "*", count=1000)])


async def test_removing_a_parent_removes_its_subtree_in_every_queue(
    producer: FlowProducer, queue_name: str, other_queue: str, redis: aioredis.Redis
) -> None:
    root = await producer.add(three_levels(queue_name, other_queue))
    async with Queue(queue_name, redis) as q:
        assert await q.remove_job(root.ref.id) == "waiting-children"
        assert await q.get_counts() == dict.fromkeys(await q.get_counts(), 0)
    async with Queue(other_queue, redis) as q:
        assert await q.get_counts() == dict.fromkeys(await q.get_counts(), 0)
    assert await keys_of(redis, queue_name) == [] and await keys_of(redis, other_queue) == []
    removed_here = {e["job_id"] for e in await stream_events(redis, queue_name, "removed")}
    removed_there = {e["job_id"] for e in await stream_events(redis, other_queue, "removed")}
    assert len(removed_here) == 2 and len(removed_there) == 3
    assert await flow_problems(redis, [queue_name, other_queue]) == []


async def test_removing_the_last_pending_child_releases_the_parent(
    producer: FlowProducer, queue_name: str, other_queue: str, redis: aioredis.Redis
) -> None:
    root = await producer.add(
        {
            "name": "root",
            "queue": queue_name,
            "children": [{"name": "a", "queue": other_queue}, {"name": "b", "queue": other_queue}],
        }
    )
    a, b = root.children
    async with Queue(other_queue, redis) as q:
        assert await q.remove_job(a.ref.id) == "wait"
        async with Queue(queue_name, redis) as parent_q:
            assert await parent_q.get_job_state(root.ref.id) is JobState.WAITING_CHILDREN
            assert (await parent_q.get_dependencies(root.ref.id)).unprocessed == [b.ref]
            assert await q.remove_job(b.ref.id) == "wait"
            assert await parent_q.get_job_state(root.ref.id) is JobState.WAIT
            assert (await parent_q.get_dependencies(root.ref.id)).children() == []
    released = await stream_events(redis, queue_name, "waiting")
    assert [(e["job_id"], e["prev"]) for e in released] == [(root.ref.id, "waiting-children")]
    assert await flow_problems(redis, [queue_name, other_queue]) == []


async def test_removing_a_completed_child_keeps_its_value_on_the_parent(
    producer: FlowProducer, queue_name: str, redis: aioredis.Redis
) -> None:
    root = await producer.add(
        {
            "name": "root",
            "queue": queue_name,
            "children": [{"name": "a", "queue": queue_name, "data": 5},
                         {"name": "b", "queue": queue_name}],
        }
    )  # fmt: skip
    a = root.children[0]

    async def process(job: Job) -> Any:
        if job.name == "b":
            await asyncio.sleep(60)  # keeps b pending
        return job.data

    worker = running_worker(queue_name, process, redis, concurrency=2, shutdown_grace=0.2)
    async with Queue(queue_name, redis) as q, worker:

        async def a_done() -> bool:
            return await q.get_job_state(a.ref.id) is JobState.COMPLETED

        await wait_until(a_done, within=15)
        assert await q.remove_job(a.ref.id) == "completed"
        assert await q.get_children_values(root.ref.id) == {a.ref: 5}
        assert await q.get_job_state(root.ref.id) is JobState.WAITING_CHILDREN


async def test_removing_a_parent_while_a_child_runs_is_refused(
    producer: FlowProducer,
    queue_name: str,
    other_queue: str,
    redis: aioredis.Redis,
    redis_url: str,
) -> None:
    """F4: a subtree with a job held by a worker is not removed (nothing is), with an error
    naming the running child; once it is done, the removal goes through."""
    root = await producer.add(three_levels(queue_name, other_queue))
    release = asyncio.Event()
    started: list[str] = []

    async def process(job: Job) -> Any:
        started.append(job.id)
        await release.wait()
        return "ok"

    async with Queue(queue_name, redis) as q, running_worker(other_queue, process, redis_url):

        async def child_running() -> bool:
            return bool(started)

        await wait_until(child_running, within=15)
        before = await keys_of(redis, queue_name) + await keys_of(redis, other_queue)
        with pytest.raises(JobStateError, match=rf"its descendant {other_queue}:\d+ is being"):
            await q.remove_job(root.ref.id)
        after = await keys_of(redis, queue_name) + await keys_of(redis, other_queue)
        assert after == before
        assert await flow_problems(redis, [queue_name, other_queue]) == []
        release.set()

        async def nothing_active() -> bool:
            async with Queue(other_queue, redis) as oq:
                return (await oq.get_counts("active"))["active"] == 0

        await wait_until(nothing_active, within=15)
        assert await q.remove_job(root.ref.id) == "waiting-children"
    assert await keys_of(redis, queue_name) == [] and await keys_of(redis, other_queue) == []


async def test_remove_tree_script_refuses_a_missing_queue_and_a_big_tree(
    producer: FlowProducer, queue_name: str, other_queue: str, redis: aioredis.Redis
) -> None:
    root = await producer.add(three_levels(queue_name, other_queue))
    scripts = ScriptRegistry(redis)
    only_one = await commands.remove_tree(scripts, [QueueKeys(queue_name)], root.ref.key, 100)
    assert only_one.code == -11 and only_one.detail.startswith(QueueKeys(other_queue).base)
    both = [QueueKeys(queue_name), QueueKeys(other_queue)]
    too_big = await commands.remove_tree(scripts, both, root.ref.key, 3)
    assert too_big.code == -12
    assert await flow_problems(redis, [queue_name, other_queue]) == []
    gone = await commands.remove_tree(scripts, both, QueueKeys(queue_name).job("nope"), 100)
    assert gone.code == -1
    async with Queue(queue_name, redis) as q:
        with pytest.raises(JobNotFound):
            await q.remove_job("nope")


async def test_leftover_flow_keys_are_deleted_with_the_job(
    producer: FlowProducer, queue_name: str, redis: aioredis.Redis
) -> None:
    """Jobs deleted by clean (or retention) take their flow keys with them."""
    root: FlowNode = await producer.add(
        {"name": "root", "queue": queue_name, "children": [{"name": "a", "queue": queue_name}]}
    )

    async def process(job: Job) -> Any:
        return job.name

    async with Queue(queue_name, redis) as q, running_worker(queue_name, process, redis):

        async def root_done() -> bool:
            return await q.get_job_state(root.ref.id) is JobState.COMPLETED

        await wait_until(root_done, within=15)
        assert await redis.exists(q.keys.processed(root.ref.id))
        await q.clean(0, 100)
        assert await keys_of(redis, queue_name) == []
