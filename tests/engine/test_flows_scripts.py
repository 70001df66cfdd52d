"""The flow parts of the Lua scripts called directly (``engine.commands``): what complete_job,
fail_job, remove_job and retry_job do to a parent, read back from the keys."""

from __future__ import annotations

import uuid

import pytest
import redis.asyncio as aioredis

from engine import FlowProducer, JobState, Queue, commands
from engine.commands import Lease, TakenJob
from engine.errors import JobStateError
from engine.flows import FlowNode
from engine.keys import QueueKeys
from engine.options import Retention


@pytest.fixture
def other_queue() -> str:
    return "t-" + uuid.uuid4().hex[:12]


async def flow(
    redis: aioredis.Redis, parent_queue: str, child_queue: str, **opts: object
) -> FlowNode:
    async with FlowProducer(redis) as fp:
        return await fp.add(
            {
                "name": "p",
                "queue": parent_queue,
                "children": [{"name": "c", "queue": child_queue, "opts": dict(opts)}],
            }
        )


async def take(queue: Queue) -> TakenJob:
    (job,) = (
        await commands.move_to_active(queue.scripts, queue.keys, Lease("t", 30_000, "w", 1))
    ).jobs
    return job


async def test_complete_job_releases_the_parent_into_its_paused_queue(
    redis: aioredis.Redis, queue_name: str, other_queue: str
) -> None:
    node = await flow(redis, queue_name, other_queue)
    async with Queue(queue_name, redis) as parents, Queue(other_queue, redis) as children:
        await parents.pause()
        job = await take(children)
        assert commands.parent_queue(job.fields) == parents.keys
        await commands.complete_job(
            children.scripts, children.keys, job.id, job.token, "1", Retention(),
            parent=parents.keys,
        )  # fmt: skip
        assert await parents.get_job_state(node.ref.id) is JobState.PAUSED
        assert await redis.zcard(parents.keys.marker) == 0  # a paused queue wakes nobody


async def test_parent_keys_of_another_queue_leave_the_parent_alone(
    redis: aioredis.Redis, queue_name: str, other_queue: str
) -> None:
    node = await flow(redis, queue_name, other_queue)
    async with Queue(other_queue, redis) as children:
        job = await take(children)
        wrong = QueueKeys("t-" + uuid.uuid4().hex[:12])
        await commands.complete_job(
            children.scripts, children.keys, job.id, job.token, "1", Retention(), parent=wrong
        )
        assert await children.get_job_state(job.id) is JobState.COMPLETED
    async with Queue(queue_name, redis) as parents:
        assert await parents.get_job_state(node.ref.id) is JobState.WAITING_CHILDREN
        assert (await parents.get_dependencies(node.ref.id)).unprocessed == [node.children[0].ref]


async def test_a_failed_attempt_that_will_be_retried_does_not_touch_the_parent(
    redis: aioredis.Redis, queue_name: str, other_queue: str
) -> None:
    node = await flow(redis, queue_name, other_queue, remove_dependency_on_failure=True)
    async with Queue(other_queue, redis) as children, Queue(queue_name, redis) as parents:
        job = await take(children)
        await commands.fail_job(
            children.scripts, children.keys, job.id, job.token, "x", "[]", 0, Retention(),
            parent=parents.keys,
        )  # fmt: skip
        assert await children.get_job_state(job.id) is JobState.WAIT
        assert await parents.get_job_state(node.ref.id) is JobState.WAITING_CHILDREN
        job = await take(children)
        await commands.fail_job(
            children.scripts, children.keys, job.id, job.token, "x", "[]", -1, Retention(),
            parent=parents.keys,
        )  # fmt: skip
        assert await parents.get_job_state(node.ref.id) is JobState.WAIT


async def test_fail_parent_on_failure_dooms_the_parent_and_a_retry_clears_it(
    redis: aioredis.Redis, queue_name: str, other_queue: str
) -> None:
    node = await flow(redis, queue_name, other_queue, fail_parent_on_failure=True)
    async with Queue(other_queue, redis) as children, Queue(queue_name, redis) as parents:
        child = await take(children)
        await commands.fail_job(
            children.scripts, children.keys, child.id, child.token, "disk full", "[]", -1,
            Retention(), parent=parents.keys,
        )  # fmt: skip
        parent = await take(parents)  # released to the front of wait, doomed
        assert parent.id == node.ref.id
        child_key = children.keys.job(child.id)
        assert parent.fields["deferred_failure"] == f"child {child_key} failed: disk full"
        await commands.fail_job(
            parents.scripts, parents.keys, parent.id, parent.token,
            parent.fields["deferred_failure"], "[]", -1, Retention(),
        )  # fmt: skip
        await parents.retry_job(parent.id)
        assert await redis.hexists(parents.keys.job(parent.id), "deferred_failure") == 0
        assert await parents.get_job_state(parent.id) is JobState.WAIT  # no pending child


async def test_remove_job_script_hands_flow_jobs_to_remove_tree(
    redis: aioredis.Redis, queue_name: str, other_queue: str
) -> None:
    node = await flow(redis, queue_name, other_queue)
    async with Queue(queue_name, redis) as parents, Queue(other_queue, redis) as children:
        assert await commands.remove_job(parents.scripts, parents.keys, node.ref.id) is None
        assert (
            await commands.remove_job(children.scripts, children.keys, node.children[0].ref.id)
            is None
        )
        plain = await parents.add("plain")
        assert await commands.remove_job(parents.scripts, parents.keys, plain.id) == "wait"


async def test_add_flow_refuses_a_taken_child_id_directly(
    redis: aioredis.Redis, queue_name: str
) -> None:
    keys = QueueKeys(queue_name)
    async with Queue(queue_name, redis) as q:
        await q.add("x", job_id="taken")
        spec = commands.FlowJobSpec(1, 0, "", "p", "null", "{}", 0, 0, False, 1, "")
        child = commands.FlowJobSpec(1, 1, "taken", "c", "null", "{}", 0, 0, False, 1, "")
        with pytest.raises(JobStateError, match="'taken' exists already"):
            await commands.add_flow(q.scripts, [keys], [spec, child], 10_000)
        now, placed = await commands.add_flow(q.scripts, [keys], [spec], 10_000)
        assert now > 0 and placed == [("1", "wait")]
