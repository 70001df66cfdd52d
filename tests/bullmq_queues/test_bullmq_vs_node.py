"""The BullMQ backend against the real library: its counts and pages equal Node BullMQ's own
``getJobCounts()`` / ``getJobs()`` at every step of a workload, on v6 and on v5 queues."""

from __future__ import annotations

from typing import Any

import pytest
import redis.asyncio as aioredis
from support.bullmq_node import NodeDriver
from support.workers import wait_until

from dashboard.bullmq.backend import BullMQBackend
from dashboard.bullmq.layout import PauseStyle
from dashboard.model import STATE_ORDER

pytestmark = pytest.mark.timeout(120)

ASCENDING = {"delayed", "prioritized"}
"""States the backend pages in run order, i.e. Node's ``getJobs(..., asc=true)``."""


async def assert_same_view(
    backend: BullMQBackend, redis: aioredis.Redis, node: NodeDriver, queue: str
) -> dict[str, int]:
    """Every count Node reports, and the first page of every state, equal the backend's."""
    node_counts: dict[str, int] = await node.call("counts", queue=queue)
    reading = (await backend.read_counts(redis, [queue]))[queue]
    ours = reading.counts.as_dict()
    for name, count in node_counts.items():
        state = "wait" if name == "waiting" else name
        assert ours[state] == count, f"{state}: backend {ours[state]}, Node {count}"
    for state in STATE_ORDER:
        page = await backend.read_page(redis, queue, state, 0, 50)
        node_ids = await node.call(
            "jobs", queue=queue, state=state, start=0, end=49, asc=state in ASCENDING
        )
        assert [row.id for row in page.rows] == node_ids, state
        assert page.total == ours[state]
        assert not any(row.malformed for row in page.rows)
    return ours


async def node_counts(node: NodeDriver, queue: str) -> dict[str, Any]:
    counts: dict[str, Any] = await node.call("counts", queue=queue)
    return counts


async def test_counts_and_pages_equal_node_through_a_workload(
    node: NodeDriver, redis: aioredis.Redis, queue_name: str
) -> None:
    backend = BullMQBackend()
    children = f"{queue_name}-kids"  # no worker: the flow's parent keeps waiting for them
    for i in range(3):
        await node.call("add", queue=queue_name, name="plain", data={"i": i})
    await node.call("add", queue=queue_name, name="urgent", opts={"priority": 1})
    await node.call("add", queue=queue_name, name="later", opts={"priority": 5})
    for i in range(2):
        await node.call("add", queue=queue_name, name="delayed", opts={"delay": 600_000 + i})
    flow = await node.call("flow", queue=queue_name, childQueue=children, children=2)
    assert queue_name in await backend.discover_queues(redis)
    counts = await assert_same_view(backend, redis, node, queue_name)
    assert counts["wait"] == 3 and counts["prioritized"] == 2 and counts["delayed"] == 2
    assert counts["waiting-children"] == 1

    # a worker with room for two jobs: it finishes the ready ones, then holds two for good
    await node.call("worker", queue=queue_name, concurrency=2, workerName="dash-test")
    fail = {"attempts": 1}
    await node.call("add", queue=queue_name, name="doomed", data={"mode": "fail"}, opts=fail)
    await node.call("add", queue=queue_name, name="doomed", data={"mode": "fail"}, opts=fail)

    async def finished() -> bool:
        counts = await node_counts(node, queue_name)
        return bool(counts["completed"] == 5 and counts["failed"] == 2)

    await wait_until(finished, within=30)
    for _ in range(2):
        await node.call("add", queue=queue_name, name="holder", data={"mode": "hold"})

    async def holding() -> bool:
        return bool((await node_counts(node, queue_name))["active"] == 2)

    await wait_until(holding, within=30)
    for i in range(2):
        await node.call("add", queue=queue_name, name="queued", data={"i": i})
    await node.call("add", queue=queue_name, name="queued-prio", opts={"priority": 3})
    counts = await assert_same_view(backend, redis, node, queue_name)
    assert counts["active"] == 2 and counts["wait"] == 2 and counts["prioritized"] == 1
    assert counts["completed"] == 5 and counts["failed"] == 2
    reading = (await backend.read_counts(redis, [queue_name]))[queue_name]
    assert reading.workers == await node.call("workers", queue=queue_name)
    assert reading.workers and reading.workers >= 1
    assert reading.oldest_wait_ms is not None

    # paused: v5 moves the waiting jobs to the paused list, v6 leaves them in wait
    await node.call("pause", queue=queue_name)
    await node.call("add", queue=queue_name, name="while-paused")
    counts = await assert_same_view(backend, redis, node, queue_name)
    reading = (await backend.read_counts(redis, [queue_name]))[queue_name]
    assert reading.paused
    layout = backend.layouts[queue_name]
    assert not layout.mixed
    if layout.major == 5:
        assert layout.pause_style is PauseStyle.LIST
        assert (counts["paused"], counts["wait"]) == (3, 0)
    else:
        assert layout.major == 6
        assert layout.pause_style is PauseStyle.FLAG
        assert (counts["paused"], counts["wait"]) == (0, 3)

    # resumed and released: everything ready runs to the end
    await node.call("resume", queue=queue_name)
    await node.call("release")

    async def drained() -> bool:
        counts = await node_counts(node, queue_name)
        await node.call("release")
        return bool(counts["completed"] == 11 and counts["active"] == 0)

    await wait_until(drained, within=30)
    counts = await assert_same_view(backend, redis, node, queue_name)
    assert counts["waiting-children"] == 1 and counts["delayed"] == 2
    assert not (await backend.read_counts(redis, [queue_name]))[queue_name].paused
    kids = await assert_same_view(backend, redis, node, children)
    assert kids["wait"] == 2
    parent = await backend.read_job(redis, queue_name, flow["parent"])
    assert parent is not None and parent.state == "waiting-children"
    assert "pending: 2" in dict(parent.sections)["children"]
