"""Flows run by real workers (in this process): parents run after their children and read
their values; each failure policy; children deleted by retention; parent delay and priority."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from typing import Any

import pytest
import redis.asyncio as aioredis
from support.flows import flow_problems
from support.streams import stream_events
from support.workers import running_worker, wait_until

from engine import FlowProducer, Job, JobState, Queue, UnrecoverableError, commands
from engine.flows import FlowNode
from engine.keys import QueueKeys
from engine.options import Retention


async def process(job: Job) -> Any:
    """Leaves return their data; "fail" jobs fail for good; parents report what they saw."""
    if job.name == "fail":
        raise UnrecoverableError(f"{job.data} broke")
    if job.name == "parent":
        deps = await job.get_dependencies()
        return {
            "values": {str(ref): value for ref, value in (await job.get_children_values()).items()},
            "ignored": {str(ref): reason for ref, reason in deps.ignored.items()},
            "pending": len(deps.unprocessed),
        }
    return job.data


def sync_process(job: Job) -> Any:
    """The same for a ``def`` processor, through the sync accessors."""
    if job.name == "parent":
        values = job.get_children_values_sync()
        return {"values": {str(ref): value for ref, value in values.items()}}
    return job.data


Workers = Callable[..., Awaitable[None]]


@pytest.fixture
def other_queue() -> str:
    return "t-" + uuid.uuid4().hex[:12]


@pytest.fixture
async def producer(redis_url: str) -> AsyncIterator[FlowProducer]:
    async with FlowProducer(redis_url) as fp:
        yield fp


@pytest.fixture
async def workers(redis_url: str) -> AsyncIterator[Workers]:
    """``await workers(queue, ...)`` starts an in-process worker; all are closed at the end."""
    async with AsyncExitStack() as stack:

        async def start(queue: str, processor: Any = process, **options: Any) -> None:
            await stack.enter_async_context(
                running_worker(queue, processor, redis_url, block_timeout=0.2, **options)
            )

        yield start


async def state_of(redis: aioredis.Redis, node: FlowNode) -> JobState | None:
    async with Queue(node.ref.queue, redis) as q:
        return await q.get_job_state(node.ref.id)


async def job_of(redis: aioredis.Redis, node: FlowNode) -> Job:
    async with Queue(node.ref.queue, redis) as q:
        job = await q.get_job(node.ref.id)
    assert job is not None
    return job


async def until_state(
    redis: aioredis.Redis, node: FlowNode, state: JobState, within: float = 20
) -> Job:
    async def reached() -> bool:
        return await state_of(redis, node) is state

    await wait_until(reached, within=within)
    return await job_of(redis, node)


async def test_three_levels_across_two_queues_run_bottom_up(
    producer: FlowProducer,
    workers: Workers,
    queue_name: str,
    other_queue: str,
    redis: aioredis.Redis,
) -> None:
    root = await producer.add(
        {
            "name": "parent",
            "queue": queue_name,
            "children": [
                {
                    "name": "parent",
                    "queue": other_queue,
                    "children": [
                        {"name": "leaf", "queue": queue_name, "data": "a"},
                        {"name": "leaf", "queue": other_queue, "data": "b"},
                    ],
                },
                {"name": "leaf", "queue": other_queue, "data": "c"},
            ],
        }
    )
    mid, leaf_c = root.children
    leaf_a, leaf_b = mid.children
    await workers(queue_name, concurrency=3)
    await workers(other_queue, concurrency=3)

    done = await until_state(redis, root, JobState.COMPLETED)
    mid_job = await job_of(redis, mid)
    assert mid_job.returnvalue == {
        "values": {str(leaf_a.ref): "a", str(leaf_b.ref): "b"},
        "ignored": {},
        "pending": 0,
    }
    assert done.returnvalue == {
        "values": {str(mid.ref): mid_job.returnvalue, str(leaf_c.ref): "c"},
        "ignored": {},
        "pending": 0,
    }
    # each parent started only after all its children had finished
    leaves = [await job_of(redis, n) for n in (leaf_a, leaf_b, leaf_c)]
    assert mid_job.processed_on is not None and done.processed_on is not None
    assert all(j.finished_on is not None for j in leaves)
    assert mid_job.processed_on >= max(j.finished_on or 0 for j in leaves[:2])
    assert done.processed_on >= max(mid_job.finished_on or 0, leaves[2].finished_on or 0)
    # the release is in the parent's own stream
    released = [
        e for e in await stream_events(redis, queue_name, "waiting") if e["job_id"] == root.ref.id
    ]
    assert [e["prev"] for e in released] == ["waiting-children"]
    async with Queue(queue_name, redis) as q:
        assert (await q.get_counts("waiting-children"))["waiting-children"] == 0
    assert await flow_problems(redis, [queue_name, other_queue]) == []


async def test_sync_processor_reads_children_values(
    producer: FlowProducer, workers: Workers, queue_name: str, redis: aioredis.Redis
) -> None:
    root = await producer.add(
        {
            "name": "parent",
            "queue": queue_name,
            "children": [{"name": "leaf", "queue": queue_name, "data": [1, 2]}],
        }
    )
    await workers(queue_name, sync_process)
    done = await until_state(redis, root, JobState.COMPLETED)
    assert done.returnvalue == {"values": {str(root.children[0].ref): [1, 2]}}


async def test_failed_child_without_policy_keeps_the_parent_waiting_until_retried(
    producer: FlowProducer,
    workers: Workers,
    queue_name: str,
    other_queue: str,
    redis: aioredis.Redis,
) -> None:
    """F1, no policy: the parent stays in waiting-children and its dependencies name the
    child that blocks it; once the child is retried and completes, the parent runs."""
    root = await producer.add(
        {
            "name": "parent",
            "queue": queue_name,
            "children": [
                {"name": "fail", "queue": other_queue, "data": "x"},
                {"name": "leaf", "queue": other_queue, "data": "ok"},
            ],
        }
    )
    bad, good = root.children
    await workers(queue_name)
    await workers(other_queue)
    failed = await until_state(redis, bad, JobState.FAILED)
    assert failed.failed_reason == "UnrecoverableError: x broke"
    await until_state(redis, good, JobState.COMPLETED)
    assert await state_of(redis, root) is JobState.WAITING_CHILDREN
    async with Queue(queue_name, redis) as q:
        deps = await q.get_dependencies(root.ref.id)
    assert deps.unprocessed == [bad.ref]
    assert deps.processed == {good.ref: "ok"}

    # the operator fixes the cause and retries the child: the parent moves on
    async with Queue(other_queue, redis) as q:
        await redis.hset(q.keys.job(bad.ref.id), "name", "leaf")
        await q.retry_job(bad.ref.id)
    done = await until_state(redis, root, JobState.COMPLETED)
    assert done.returnvalue["values"] == {str(bad.ref): "x", str(good.ref): "ok"}


async def test_fail_parent_on_failure_fails_the_parent(
    producer: FlowProducer,
    workers: Workers,
    queue_name: str,
    other_queue: str,
    redis: aioredis.Redis,
) -> None:
    """F1 with fail_parent_on_failure: the parent fails, naming the child, without running;
    the parent's own policy carries the failure up to the grandparent."""
    root = await producer.add(
        {
            "name": "parent",
            "queue": queue_name,
            "children": [
                {
                    "name": "parent",
                    "queue": other_queue,
                    "opts": {"fail_parent_on_failure": True},
                    "children": [
                        {
                            "name": "fail",
                            "queue": queue_name,
                            "data": "disk",
                            "opts": {"fail_parent_on_failure": True},
                        },
                        {"name": "leaf", "queue": queue_name, "data": 1},
                    ],
                }
            ],
        }
    )
    (mid,) = root.children
    bad, _good = mid.children
    await workers(queue_name)
    await workers(other_queue)
    mid_job = await until_state(redis, mid, JobState.FAILED)
    assert mid_job.failed_reason is not None
    assert f"{bad.ref.key} failed: UnrecoverableError: disk broke" in mid_job.failed_reason
    assert mid_job.attempts_started == 1 and mid_job.returnvalue is None
    root_job = await until_state(redis, root, JobState.FAILED)
    assert root_job.failed_reason is not None and mid.ref.key in root_job.failed_reason
    async with Queue(other_queue, redis) as q:
        deps = await q.get_dependencies(mid.ref.id)
    assert deps.failed == [bad.ref]
    assert bad.ref not in deps.unprocessed
    assert await flow_problems(redis, [queue_name, other_queue]) == []


async def test_ignore_dependency_on_failure_lets_the_parent_run_and_see_it(
    producer: FlowProducer, workers: Workers, queue_name: str, redis: aioredis.Redis
) -> None:
    """F1 with ignore_dependency_on_failure: the parent runs and sees the failure."""
    root = await producer.add(
        {
            "name": "parent",
            "queue": queue_name,
            "children": [
                {
                    "name": "fail",
                    "queue": queue_name,
                    "data": "net",
                    "opts": {"ignore_dependency_on_failure": True},
                },
                {"name": "leaf", "queue": queue_name, "data": 7},
            ],
        }
    )
    bad, good = root.children
    await workers(queue_name)
    done = await until_state(redis, root, JobState.COMPLETED)
    assert done.returnvalue == {
        "values": {str(good.ref): 7},
        "ignored": {str(bad.ref): "UnrecoverableError: net broke"},
        "pending": 0,
    }


async def test_remove_dependency_on_failure_forgets_the_child(
    producer: FlowProducer, workers: Workers, queue_name: str, redis: aioredis.Redis
) -> None:
    root = await producer.add(
        {
            "name": "parent",
            "queue": queue_name,
            "children": [
                {
                    "name": "fail",
                    "queue": queue_name,
                    "opts": {"remove_dependency_on_failure": True},
                },
                {"name": "leaf", "queue": queue_name, "data": 7},
            ],
        }
    )
    await workers(queue_name)
    done = await until_state(redis, root, JobState.COMPLETED)
    assert done.returnvalue == {"values": {str(root.children[1].ref): 7}, "ignored": {},
                                "pending": 0}  # fmt: skip
    async with Queue(queue_name, redis) as q:
        deps = await q.get_dependencies(root.ref.id)
    assert deps.children() == [root.children[1].ref]
    # the failed child itself is kept, as any failed job
    assert await state_of(redis, root.children[0]) is JobState.FAILED


@pytest.mark.parametrize(
    ("policy", "parent_state"),
    [(None, JobState.COMPLETED), ("fail_parent_on_failure", JobState.FAILED)],
)
async def test_child_deleted_by_remove_on_fail_does_not_orphan_the_parent(
    producer: FlowProducer,
    workers: Workers,
    queue_name: str,
    other_queue: str,
    redis: aioredis.Redis,
    policy: str | None,
    parent_state: JobState,
) -> None:
    """F2: a failed child deleted at once (remove_on_fail) moves the parent on: it runs
    without the child, or fails when the child had fail_parent_on_failure."""
    opts: dict[str, Any] = {"remove_on_fail": True}
    if policy:
        opts[policy] = True
    root = await producer.add(
        {
            "name": "parent",
            "queue": queue_name,
            "children": [{"name": "fail", "queue": other_queue, "opts": opts}],
        }
    )
    await workers(queue_name)
    await workers(other_queue)
    await until_state(redis, root, parent_state)
    assert not await redis.exists(root.children[0].ref.key)


async def test_child_deleted_by_remove_on_complete_still_hands_over_its_value(
    producer: FlowProducer, workers: Workers, queue_name: str, redis: aioredis.Redis
) -> None:
    root = await producer.add(
        {
            "name": "parent",
            "queue": queue_name,
            "children": [
                {"name": "leaf", "queue": queue_name, "data": "v",
                 "opts": {"remove_on_complete": True}},
            ],
        }
    )  # fmt: skip
    await workers(queue_name)
    done = await until_state(redis, root, JobState.COMPLETED)
    assert done.returnvalue["values"] == {str(root.children[0].ref): "v"}
    assert not await redis.exists(root.children[0].ref.key)


@pytest.mark.parametrize(
    ("opts", "released_to"),
    [({"delay": 60_000}, JobState.DELAYED), ({"priority": 5}, JobState.PRIORITIZED)],
)
async def test_parent_delay_and_priority_apply_when_it_is_released(
    producer: FlowProducer,
    workers: Workers,
    queue_name: str,
    other_queue: str,
    redis: aioredis.Redis,
    opts: dict[str, Any],
    released_to: JobState,
) -> None:
    root = await producer.add(
        {
            "name": "parent",
            "queue": queue_name,
            "opts": opts,
            "children": [{"name": "leaf", "queue": other_queue}],
        }
    )
    assert root.job is not None and root.job.state is JobState.WAITING_CHILDREN
    await workers(other_queue)  # no worker on the parent's queue: it stays where it lands
    await until_state(redis, root, released_to)


async def test_retrying_the_failed_child_then_the_failed_parent_completes_the_flow(
    producer: FlowProducer,
    workers: Workers,
    queue_name: str,
    other_queue: str,
    redis: aioredis.Redis,
) -> None:
    """As in BullMQ: retrying the child of a parent it failed does not bring the parent back;
    the child is pending for it again, and once the parent is retried too it runs with the
    child's value."""
    root = await producer.add(
        {
            "name": "parent",
            "queue": queue_name,
            "children": [
                {"name": "fail", "queue": other_queue, "data": "x",
                 "opts": {"fail_parent_on_failure": True}},
            ],
        }
    )  # fmt: skip
    (bad,) = root.children
    await workers(queue_name)
    await workers(other_queue)
    await until_state(redis, root, JobState.FAILED)
    async with Queue(other_queue, redis) as q:
        await redis.hset(q.keys.job(bad.ref.id), "name", "leaf")
        await q.retry_job(bad.ref.id)
    await until_state(redis, bad, JobState.COMPLETED)
    assert await state_of(redis, root) is JobState.FAILED
    async with Queue(queue_name, redis) as q:
        deps = await q.get_dependencies(root.ref.id)
        assert deps.processed == {bad.ref: "x"} and deps.failed == []
        await q.retry_job(root.ref.id)
    done = await until_state(redis, root, JobState.COMPLETED)
    assert done.returnvalue["values"] == {str(bad.ref): "x"}
    assert done.deferred_failure is None
    assert await flow_problems(redis, [queue_name, other_queue]) == []


async def test_a_retried_parent_with_pending_children_waits_for_them_again(
    producer: FlowProducer,
    workers: Workers,
    queue_name: str,
    other_queue: str,
    redis: aioredis.Redis,
) -> None:
    """Retrying a failed parent whose other children have not finished puts it back in
    waiting-children (not in wait, where it would run without them)."""
    root = await producer.add(
        {
            "name": "parent",
            "queue": queue_name,
            "children": [
                {"name": "fail", "queue": other_queue, "data": "x",
                 "opts": {"fail_parent_on_failure": True}},
                {"name": "leaf", "queue": other_queue, "data": "slow"},
            ],
        }
    )  # fmt: skip
    bad, slow = root.children
    await workers(queue_name)
    async with Queue(other_queue, redis) as other:
        # run only the failing child: take it by hand, fail it as a worker would
        taken = await commands.move_to_active(
            other.scripts, other.keys, commands.Lease("tok", 30_000, "w", 1)
        )
        assert [j.id for j in taken.jobs] == [bad.ref.id]
        await commands.fail_job(
            other.scripts, other.keys, bad.ref.id, taken.jobs[0].token, "boom", "[]", -1,
            Retention(), parent=QueueKeys(queue_name),
        )  # fmt: skip
        await until_state(redis, root, JobState.FAILED)
        async with Queue(queue_name, redis) as q:
            await q.retry_job(root.ref.id)
            assert await q.get_job_state(root.ref.id) is JobState.WAITING_CHILDREN
            events = await stream_events(redis, queue_name, "waiting-children")
            assert events[-1]["job_id"] == root.ref.id and events[-1]["prev"] == "failed"
        await redis.hset(other.keys.job(bad.ref.id), "name", "leaf")
        await other.retry_job(bad.ref.id)
        async with Queue(queue_name, redis) as q:
            assert set((await q.get_dependencies(root.ref.id)).unprocessed) == {bad.ref, slow.ref}
    await workers(other_queue)
    done = await until_state(redis, root, JobState.COMPLETED)
    assert done.returnvalue["values"] == {str(bad.ref): "x", str(slow.ref): "slow"}
    assert await flow_problems(redis, [queue_name, other_queue]) == []


async def test_retrying_an_ignored_child_makes_it_pending_again(
    producer: FlowProducer, queue_name: str, redis: aioredis.Redis
) -> None:
    root = await producer.add(
        {
            "name": "parent",
            "queue": queue_name,
            "children": [
                {"name": "fail", "queue": queue_name,
                 "opts": {"ignore_dependency_on_failure": True}},
                {"name": "leaf", "queue": queue_name},
            ],
        }
    )  # fmt: skip
    bad = root.children[0]
    async with Queue(queue_name, redis) as q:
        taken = await commands.move_to_active(
            q.scripts, q.keys, commands.Lease("tok", 30_000, "w", 1)
        )
        assert [j.id for j in taken.jobs] == [bad.ref.id]
        await commands.fail_job(
            q.scripts, q.keys, bad.ref.id, taken.jobs[0].token, "boom", "[]", -1, Retention(),
            parent=q.keys,
        )  # fmt: skip
        deps = await q.get_dependencies(root.ref.id)
        assert deps.ignored == {bad.ref: "boom"} and len(deps.unprocessed) == 1
        await q.retry_job(bad.ref.id)
        deps = await q.get_dependencies(root.ref.id)
        assert deps.ignored == {} and len(deps.unprocessed) == 2
    assert await flow_problems(redis, [queue_name]) == []
