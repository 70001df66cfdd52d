"""One job read by the BullMQ backend equals the same job read by Node BullMQ: data, options by
their long names, progress, attempts, timestamps, result, failure, stack, logs, worker, dedup id,
parent and children (v6 and v5)."""

from __future__ import annotations

from typing import Any

import pytest
import redis.asyncio as aioredis
from support.bullmq_node import NodeDriver
from support.workers import wait_until

from dashboard.bullmq.backend import BullMQBackend
from dashboard.model import JobDetail

pytestmark = pytest.mark.timeout(120)


async def both_views(
    backend: BullMQBackend, redis: aioredis.Redis, node: NodeDriver, queue: str, job_id: str
) -> tuple[JobDetail, dict[str, Any]]:
    ours = await backend.read_job(redis, queue, job_id)
    theirs = await node.call("job", queue=queue, id=job_id)
    assert ours is not None and theirs is not None
    assert not ours.malformed, ours.malformed_reason
    assert ours.name == theirs["name"]
    assert ours.data == theirs["data"]
    assert ours.timestamp_ms == theirs["timestamp"]
    assert ours.processed_on_ms == theirs["processedOn"]
    assert ours.finished_on_ms == theirs["finishedOn"]
    assert ours.attempts_made == theirs["attemptsMade"]
    assert ours.failed_reason == theirs["failedReason"]
    assert list(ours.stacktrace) == theirs["stacktrace"]
    assert ours.returnvalue == theirs["returnvalue"]
    assert ours.worker == theirs["processedBy"]
    node_state = theirs["state"]
    assert ours.state == ("wait" if node_state == "waiting" else node_state)
    # Node decodes the stored short option names too; every option it shows, we show alike
    for name, value in theirs["opts"].items():
        assert ours.opts.get(name) == value, name
    return ours, theirs


async def test_a_job_reads_as_node_reads_it(
    node: NodeDriver, redis: aioredis.Redis, queue_name: str
) -> None:
    backend = BullMQBackend()
    kids = f"{queue_name}-kids"
    opts = {
        "attempts": 2,
        "backoff": 10,
        "deduplication": {"id": f"dedup-{queue_name}"},
        "keepLogs": 5,
        "removeOnFail": 10,
    }
    rich = await node.call("add", queue=queue_name, name="rich", data={"x": [1, "ü"]}, opts=opts)
    doomed = await node.call(
        "add", queue=queue_name, name="doomed", data={"mode": "fail"}, opts={"attempts": 1}
    )
    flow = await node.call("flow", queue=queue_name, childQueue=kids, children=2)
    pending, _ = await both_views(backend, redis, node, queue_name, flow["parent"])
    assert pending.state == "waiting-children"
    assert "pending: 2" in dict(pending.sections)["children"]
    await node.call("worker", queue=queue_name, concurrency=2, workerName="reader-test")
    await node.call("worker", queue=kids, concurrency=2, workerName="kid-worker")

    async def all_done() -> bool:
        counts = await node.call("counts", queue=queue_name)
        return bool(counts["completed"] == 2 and counts["failed"] == 1)

    await wait_until(all_done, within=30)

    ours, theirs = await both_views(backend, redis, node, queue_name, rich)
    assert ours.state == "completed"
    assert ours.opts["deduplication"] == {"id": f"dedup-{queue_name}"}
    assert ours.opts["keepLogs"] == 5
    assert "de" not in ours.opts and "kl" not in ours.opts
    assert ours.returnvalue == {"done": {"x": [1, "ü"]}}
    assert ours.progress == theirs["progress"] == 100
    assert ours.worker == "reader-test"
    assert ours.attempts == 2
    node_logs = await node.call("logs", queue=queue_name, id=rich)
    assert list(ours.logs) == node_logs["logs"] == [f"processed {rich}"]
    if theirs["deduplicationId"] is not None:
        assert f"deduplication id: {theirs['deduplicationId']}" in dict(ours.sections)["bullmq"]

    failed, _ = await both_views(backend, redis, node, queue_name, doomed)
    assert failed.state == "failed"
    assert failed.failed_reason == f"failed on purpose: {doomed}"
    assert failed.stacktrace and "failed on purpose" in failed.stacktrace[0]

    parent, _ = await both_views(backend, redis, node, queue_name, flow["parent"])
    children = dict(parent.sections)["children"]
    assert "completed: 2" in children and "pending" not in children
    child, theirs = await both_views(backend, redis, node, kids, flow["children"][0])
    parent_section = dict(child.sections)["parent"]
    assert f"key: {theirs['parentKey']}" in parent_section
    assert '"failParentOnFailure"' not in parent_section  # flags are shown by their long names
    assert "failParentOnFailure: true" in parent_section
    assert child.opts.get("failParentOnFailure") is True
