"""``SyncFlowProducer`` and the flow readers of ``SyncQueue``, from plain test functions; a
child is completed as a worker would, so the parent's bookkeeping is real."""

from __future__ import annotations

import asyncio
import threading
import uuid

import pytest
import redis.asyncio as aioredis

from engine import JobRef, JobState, SyncFlowProducer, SyncQueue, commands
from engine.errors import InvalidJobOptions
from engine.keys import QueueKeys
from engine.options import Retention
from engine.scripts import ScriptRegistry


def complete_next(url: str, queue: str, value: str, parent: str) -> str:
    """Take the next ready job of ``queue`` and complete it with ``value``."""

    async def go() -> str:
        client = aioredis.Redis.from_url(url, decode_responses=True)
        try:
            scripts, keys = ScriptRegistry(client), QueueKeys(queue)
            lease = commands.Lease("tok-sync", 30_000, "w", 1)
            (job,) = (await commands.move_to_active(scripts, keys, lease)).jobs
            await commands.complete_job(
                scripts, keys, job.id, job.token, value, Retention(), parent=QueueKeys(parent)
            )
            return job.id
        finally:
            await client.aclose()

    return asyncio.run(go())


def test_sync_flow_producer_adds_and_reads_a_flow(redis_url: str, queue_name: str) -> None:
    other = "t-" + uuid.uuid4().hex[:12]
    with SyncFlowProducer(redis_url) as flows, SyncQueue(queue_name, redis_url) as queue:
        node = flows.add(
            {"name": "p", "queue": queue_name, "children": [{"name": "c", "queue": other}]}
        )
        assert node.job is not None and node.job.state is JobState.WAITING_CHILDREN
        (child,) = node.children
        assert queue.get_dependencies(node.ref.id).unprocessed == [child.ref]
        child_id = complete_next(redis_url, other, '{"n":1}', queue_name)
        assert queue.get_children_values(node.ref.id) == {JobRef(other, child_id): {"n": 1}}
        assert queue.get_job_state(node.ref.id) is JobState.WAIT
        tree = flows.get_flow(queue_name, node.ref.id)
        assert tree is not None and [c.ref for c in tree.children] == [child.ref]
        (bulk,) = flows.add_bulk([{"name": "solo", "queue": queue_name}])
        assert bulk.job is not None and bulk.job.state is JobState.WAIT


def test_sync_flow_producer_refuses_bad_input_and_stops_its_thread(redis_url: str) -> None:
    before = threading.active_count()
    with pytest.raises(TypeError, match="takes a redis:// URL"):
        SyncFlowProducer(object())  # type: ignore[arg-type]
    with pytest.raises(InvalidJobOptions, match="max_events"):
        SyncFlowProducer(redis_url, max_events=1)
    with SyncFlowProducer(redis_url) as flows, pytest.raises(InvalidJobOptions):
        flows.add({"name": "x"})
    assert threading.active_count() == before
