"""FlowProducer.add / add_bulk and the flow readers, against a real server: where every job of
a tree lands, what its hash and its parent's keys hold, the events, and refusals."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
from support.streams import stream_events

from engine import FlowProducer, JobRef, JobState, Queue
from engine.errors import InvalidJobData, InvalidJobOptions, JobStateError
from engine.flows import MAX_FLOW_JOBS
from engine.keys import QueueKeys


@pytest.fixture
async def producer(redis_url: str) -> AsyncIterator[FlowProducer]:
    async with FlowProducer(redis_url) as fp:
        yield fp


@pytest.fixture
def other_queue() -> str:
    return "t-" + uuid.uuid4().hex[:12]


async def test_tree_across_two_queues_lands_in_one_call(
    producer: FlowProducer, queue_name: str, other_queue: str, redis: aioredis.Redis
) -> None:
    node = await producer.add(
        {
            "name": "report",
            "queue": queue_name,
            "data": {"month": 5},
            "children": [
                {
                    "name": "fetch",
                    "queue": other_queue,
                    "children": [{"name": "page", "queue": queue_name, "data": 1}],
                },
                {"name": "later", "queue": queue_name, "opts": {"delay": 60_000}},
                {"name": "urgent", "queue": other_queue, "opts": {"priority": 2}},
            ],
        }
    )
    assert node.job is not None and node.job.state is JobState.WAITING_CHILDREN
    fetch, later, urgent = node.children
    assert fetch.job is not None and fetch.job.state is JobState.WAITING_CHILDREN
    assert later.job is not None and later.job.state is JobState.DELAYED
    assert urgent.job is not None and urgent.job.state is JobState.PRIORITIZED
    (page,) = fetch.children
    assert page.job is not None and page.job.state is JobState.WAIT
    assert page.job.parent == fetch.ref and fetch.job.parent == node.ref
    assert node.job.parent is None

    main, other = QueueKeys(queue_name), QueueKeys(other_queue)
    root_id = node.ref.id
    assert await redis.zrange(main.waiting_children, 0, -1) == [root_id]
    assert await redis.zrange(other.waiting_children, 0, -1) == [fetch.ref.id]
    assert set(await redis.smembers(main.dependencies(root_id))) == {
        fetch.ref.key,
        later.ref.key,
        urgent.ref.key,
    }
    assert await redis.smembers(other.dependencies(fetch.ref.id)) == {page.ref.key}
    assert await redis.hget(other.job(fetch.ref.id), "parent") == main.job(root_id)
    assert await redis.lrange(main.wait, 0, -1) == [page.ref.id]

    # the stored state agrees with what add() returned
    async with Queue(queue_name, redis) as q:
        assert await q.get_job_state(root_id) is JobState.WAITING_CHILDREN
        counts = await q.get_counts()
        assert counts["waiting-children"] == 1 and counts["wait"] == 1 and counts["delayed"] == 1
        deps = await q.get_dependencies(root_id)
        assert set(deps.unprocessed) == {fetch.ref, later.ref, urgent.ref}
        assert deps.processed == {} and deps.ignored == {} and deps.failed == []
        job = await q.get_job(page.ref.id)
        assert job is not None and job.parent == JobRef(other_queue, fetch.ref.id)

    events = await stream_events(redis, queue_name)
    root_events = [e["event"] for e in events if e.get("job_id") == root_id]
    assert root_events == ["added", "waiting-children"]


async def test_read_back_the_tree_with_get_flow(
    producer: FlowProducer, queue_name: str, other_queue: str
) -> None:
    node = await producer.add(
        {
            "name": "root",
            "queue": queue_name,
            "children": [
                {
                    "name": "a",
                    "queue": other_queue,
                    "children": [{"name": "a1", "queue": queue_name}],
                },
                {"name": "b", "queue": queue_name},
            ],
        }
    )
    tree = await producer.get_flow(queue_name, node.ref.id)
    assert tree is not None and tree.job is not None and tree.job.name == "root"
    names = sorted(c.job.name for c in tree.children if c.job is not None)
    assert names == ["a", "b"]
    (a,) = [c for c in tree.children if c.ref.queue == other_queue]
    assert [c.job.name for c in a.children if c.job] == ["a1"]

    shallow = await producer.get_flow(queue_name, node.ref.id, depth=1)
    assert shallow is not None
    (a_shallow,) = [c for c in shallow.children if c.ref.queue == other_queue]
    assert a_shallow.children == [] and a_shallow.truncated

    capped = await producer.get_flow(queue_name, node.ref.id, max_children=1)
    assert capped is not None and len(capped.children) == 1 and capped.truncated
    assert await producer.get_flow(queue_name, "nope") is None


async def test_add_bulk_adds_several_trees_and_leaves(
    producer: FlowProducer, queue_name: str, redis: aioredis.Redis
) -> None:
    roots = await producer.add_bulk(
        [
            {"name": "p1", "queue": queue_name, "children": [{"name": "c", "queue": queue_name}]},
            {"name": "single", "queue": queue_name},
        ]
    )
    assert [r.job.name for r in roots if r.job] == ["p1", "single"]
    assert roots[1].job is not None and roots[1].job.state is JobState.WAIT
    assert await producer.add_bulk([]) == []
    async with Queue(queue_name, redis) as q:
        assert (await q.get_counts("wait", "waiting-children")) == {
            "wait": 2,
            "waiting-children": 1,
        }


async def test_paused_queue_children_go_to_paused(
    producer: FlowProducer, queue_name: str, redis: aioredis.Redis
) -> None:
    async with Queue(queue_name, redis) as q:
        await q.pause()
        node = await producer.add(
            {"name": "p", "queue": queue_name, "children": [{"name": "c", "queue": queue_name}]}
        )
        assert node.children[0].job is not None
        assert node.children[0].job.state is JobState.PAUSED
        assert await q.get_job_state(node.children[0].ref.id) is JobState.PAUSED


async def test_same_root_id_twice_returns_the_existing_flow(
    producer: FlowProducer, queue_name: str, other_queue: str, redis: aioredis.Redis
) -> None:
    tree = {
        "name": "nightly",
        "queue": queue_name,
        "opts": {"job_id": "nightly-2024-05-01"},
        "children": [
            {"name": "step", "queue": other_queue, "opts": {"job_id": "step-1"}},
            {"name": "step", "queue": other_queue},
        ],
    }
    first = await producer.add(tree)
    again = await producer.add(tree)
    assert not first.duplicate and again.duplicate
    assert again.ref == first.ref
    assert {c.ref for c in again.children} == {c.ref for c in first.children}
    async with Queue(other_queue, redis) as q:
        assert (await q.get_counts("wait"))["wait"] == 2
    dup = await stream_events(redis, queue_name, "duplicated")
    assert [e["job_id"] for e in dup] == ["nightly-2024-05-01"]


async def test_existing_child_id_refuses_the_whole_flow(
    producer: FlowProducer, queue_name: str, redis: aioredis.Redis
) -> None:
    async with Queue(queue_name, redis) as q:
        await q.add("lonely", None, job_id="taken")
        with pytest.raises(JobStateError, match=r"'taken' exists already.*nothing was added"):
            await producer.add(
                {
                    "name": "p",
                    "queue": queue_name,
                    "children": [
                        {"name": "ok", "queue": queue_name},
                        {"name": "c", "queue": queue_name, "opts": {"job_id": "taken"}},
                    ],
                }
            )
        counts = await q.get_counts()
        assert counts["wait"] == 1 and counts["waiting-children"] == 0


@pytest.mark.parametrize(
    ("tree", "message"),
    [
        ({"queue": "q"}, r"needs a 'name' and a 'queue'"),
        ({"name": "x", "queue": "bad queue"}, r"flow: queue name 'bad queue' is invalid"),
        ({"name": "x", "queue": "q", "colour": 1}, r"unknown keys \['colour'\]"),
        ({"name": "x", "queue": "q", "opts": {"attempts": 0}}, r"flow: attempts=0 is invalid"),
        (
            {"name": "x", "queue": "q", "opts": {"fail_parent_on_failure": True}},
            r"set on a root job",
        ),
        (
            {
                "name": "x",
                "queue": "q",
                "children": [
                    {
                        "name": "c",
                        "queue": "q",
                        "opts": {
                            "fail_parent_on_failure": True,
                            "ignore_dependency_on_failure": True,
                        },
                    }
                ],
            },
            r"flow.children\[0\]: fail_parent_on_failure and ignore_dependency_on_failure",
        ),
        (
            {
                "name": "x",
                "queue": "q",
                "children": [
                    {"name": "c", "queue": "q", "opts": {"remove_dependency_on_failure": "yes"}}
                ],
            },
            r"remove_dependency_on_failure='yes' is invalid: expected a bool",
        ),
        (
            {
                "name": "x",
                "queue": "q",
                "opts": {"job_id": "same"},
                "children": [{"name": "c", "queue": "q", "opts": {"job_id": "same"}}],
            },
            r"job_id 'same' is used twice in queue 'q'",
        ),
        ({"name": "x", "queue": "q", "children": "nope"}, r"children must be a list"),
        ("not a dict", r"flow is 'not a dict': expected a dict"),
    ],
)
async def test_bad_trees_are_refused_before_anything_is_written(
    producer: FlowProducer, redis: aioredis.Redis, tree: object, message: str
) -> None:
    before = await redis.dbsize()
    with pytest.raises(InvalidJobOptions, match=message):
        await producer.add(tree)  # type: ignore[arg-type]
    assert await redis.dbsize() == before


async def test_bad_data_and_size_limits_are_refused(
    producer: FlowProducer, queue_name: str
) -> None:
    with pytest.raises(InvalidJobData, match=r"data of job 'c'"):
        await producer.add(
            {"name": "p", "queue": queue_name, "children": [{"name": "c", "queue": queue_name,
                                                             "data": {1, 2}}]}
        )  # fmt: skip
    too_many = {
        "name": "p",
        "queue": queue_name,
        "children": [{"name": "c", "queue": queue_name}] * MAX_FLOW_JOBS,
    }
    with pytest.raises(InvalidJobOptions, match=rf"at most {MAX_FLOW_JOBS} jobs"):
        await producer.add(too_many)
