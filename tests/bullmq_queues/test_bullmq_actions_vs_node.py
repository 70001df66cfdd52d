"""The dashboard's actions on queues that Node BullMQ (6.7 and 5.81) runs: retry, promote,
discard, change priority, pause/resume and clean go through BullMQ's own scripts (the pinned
``bullmq`` package), the Node workers carry on from there, and Node's own view agrees.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable

import pytest
import redis.asyncio as aioredis
from support.bullmq_node import NodeDriver
from support.workers import wait_until

from dashboard.actions import JobActions, ReadOnlyError
from dashboard.bulk import BulkRun, select_jobs
from dashboard.bullmq.backend import BullMQBackend

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
async def actions(redis_url: str) -> AsyncIterator[JobActions]:
    """The dashboard's actions on BullMQ queues, on a connection of their own."""
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        yield JobActions(BullMQBackend(), client, read_only=False)
    finally:
        await client.aclose()


async def counts_reach(node: NodeDriver, queue: str, within: float = 30, **want: int) -> None:
    """Wait until Node's ``getJobCounts`` shows ``want``."""

    async def reached() -> bool:
        counts = await node.call("counts", queue=queue)
        return all(counts[state] == n for state, n in want.items())

    await wait_until(reached, within=within, interval=0.1)


async def test_failed_jobs_retried_by_the_dashboard_complete_in_node(
    node: NodeDriver, actions: JobActions, queue_name: str
) -> None:
    await node.call("failing", on=True)
    await node.call("worker", queue=queue_name, concurrency=2)
    ids = [await node.call("add", queue=queue_name, data={"mode": "flaky"}) for _ in range(4)]
    await counts_reach(node, queue_name, failed=4)
    await node.call("failing", on=False)

    assert await actions.retry(queue_name, ids[0]) == f"retried job {ids[0]!r}: back in wait"
    await counts_reach(node, queue_name, completed=1, failed=3)
    assert await node.call("state", queue=queue_name, id=ids[0]) == "completed"
    # state-guarded: the job moved on, so nothing happens to it
    again = await actions.retry(queue_name, ids[0])
    assert again == f"not retried: job {ids[0]!r} is now completed"
    assert await actions.retry(queue_name, "no-such-job") == (
        "not retried: job 'no-such-job' no longer exists"
    )

    # retry all: the failed ids as the operator saw them, retried in batches
    assert actions._client is not None
    selection = await select_jobs(actions.backend, actions._client, queue_name, "failed")
    assert sorted(selection.ids) == sorted(ids[1:])
    outcome = await actions.retry_selected(selection, BulkRun(len(selection.ids)))
    assert outcome == f"retried 3 failed jobs of {queue_name!r}"
    await counts_reach(node, queue_name, completed=4, failed=0)
    done = await node.call("jobs", queue=queue_name, state="completed", start=0, end=-1)
    assert sorted(done) == sorted(ids)
    job = await node.call("job", queue=queue_name, id=ids[1])
    assert job["returnvalue"] == {"done": {"mode": "flaky"}} and job["failedReason"] is None


async def test_delayed_jobs_promoted_by_the_dashboard_run_in_node(
    node: NodeDriver, actions: JobActions, queue_name: str
) -> None:
    await node.call("worker", queue=queue_name)
    ids = [
        await node.call("add", queue=queue_name, data={"i": i}, opts={"delay": 600_000})
        for i in range(3)
    ]
    await counts_reach(node, queue_name, delayed=3)

    assert await actions.promote(queue_name, ids[1]) == f"promoted job {ids[1]!r}"
    await counts_reach(node, queue_name, delayed=2, completed=1)
    assert await node.call("state", queue=queue_name, id=ids[1]) == "completed"
    assert await actions.promote(queue_name, ids[1]) == (
        f"not promoted: job {ids[1]!r} is now completed"
    )

    assert await actions.promote_all(queue_name) == f"promoted 2 delayed jobs of {queue_name!r}"
    await counts_reach(node, queue_name, delayed=0, completed=3)


async def test_discard_removes_jobs_node_no_longer_sees_but_never_an_active_one(
    node: NodeDriver, actions: JobActions, queue_name: str
) -> None:
    await node.call("worker", queue=queue_name)
    failed = await node.call("add", queue=queue_name, data={"mode": "fail"})
    await counts_reach(node, queue_name, failed=1)
    held = await node.call("add", queue=queue_name, data={"mode": "hold"})
    await counts_reach(node, queue_name, active=1)
    later = await node.call("add", queue=queue_name, opts={"delay": 600_000})

    assert await actions.discard(queue_name, failed) == f"discarded job {failed!r}"
    assert await actions.discard(queue_name, later) == f"discarded job {later!r}"
    assert await node.call("job", queue=queue_name, id=failed) is None
    assert await node.call("job", queue=queue_name, id=later) is None
    # the Node worker holds this one: refused, and it runs on untouched
    assert await actions.discard(queue_name, held) == f"not discarded: job {held!r} is now active"
    assert await node.call("state", queue=queue_name, id=held) == "active"
    await node.call("release")
    await counts_reach(node, queue_name, active=0, completed=1, failed=0, delayed=0)
    assert await node.call("state", queue=queue_name, id=held) == "completed"


async def test_change_priority_reorders_what_node_runs_next(
    node: NodeDriver, actions: JobActions, queue_name: str
) -> None:
    first = await node.call("add", queue=queue_name, name="a", opts={"priority": 5})
    second = await node.call("add", queue=queue_name, name="b", opts={"priority": 5})
    order = await node.call(
        "jobs", queue=queue_name, state="prioritized", start=0, end=-1, asc=True
    )
    assert order == [first, second]

    assert await actions.change_priority(queue_name, second, 1) == (
        f"job {second!r} now has priority 1"
    )
    order = await node.call(
        "jobs", queue=queue_name, state="prioritized", start=0, end=-1, asc=True
    )
    assert order == [second, first]
    assert (
        await actions.change_priority(queue_name, first, 0) == f"job {first!r} now has priority 0"
    )
    await counts_reach(node, queue_name, prioritized=1, waiting=1)

    await node.call("worker", queue=queue_name)
    await counts_reach(node, queue_name, completed=2)
    assert await actions.change_priority(queue_name, first, 3) == (
        f"not reprioritized: job {first!r} is now completed"
    )
    with pytest.raises(ValueError, match="0 \\(none\\) to 2097152"):
        await actions.change_priority(queue_name, first, 2**21 + 1)


async def test_pause_stops_node_workers_and_resume_starts_them(
    node6: NodeDriver, actions: JobActions, queue_name: str
) -> None:
    await node6.call("worker", queue=queue_name, concurrency=2)
    await node6.call("add", queue=queue_name)  # the queue exists, with BullMQ 6's version hint
    await counts_reach(node6, queue_name, completed=1)

    assert await actions.set_paused(queue_name, True) == f"paused {queue_name!r}"
    assert await node6.call("isPaused", queue=queue_name) is True
    for i in range(3):
        await node6.call("add", queue=queue_name, data={"i": i})
    await counts_reach(node6, queue_name, waiting=3)
    # the worker is idle: a second look, a while later, finds the same
    await asyncio.sleep(1.0)
    assert (await node6.call("counts", queue=queue_name))["waiting"] == 3

    assert await actions.set_paused(queue_name, False) == f"resumed {queue_name!r}"
    assert await node6.call("isPaused", queue=queue_name) is False
    await counts_reach(node6, queue_name, waiting=0, completed=4)


async def test_clean_removes_old_finished_jobs_by_state(
    node: NodeDriver, actions: JobActions, queue_name: str
) -> None:
    await node.call("worker", queue=queue_name, concurrency=3)
    for _ in range(3):
        await node.call("add", queue=queue_name, data={"mode": "fail"})
    for _ in range(2):
        await node.call("add", queue=queue_name)
    await counts_reach(node, queue_name, failed=3, completed=2)

    assert await actions.clean(queue_name, "failed", 3_600_000, 100) == "removed 0 failed jobs"
    assert await actions.clean(queue_name, "failed", 0, 100) == "removed 3 failed jobs"
    await counts_reach(node, queue_name, failed=0, completed=2)
    assert await actions.clean(queue_name, "completed", 0, 1) == "removed 1 completed job"
    await counts_reach(node, queue_name, failed=0, completed=1)


async def test_a_bullmq5_queue_is_not_paused_by_v6_scripts_but_may_be_resumed(
    node5: NodeDriver, actions: JobActions, redis: aioredis.Redis, queue_name: str
) -> None:
    await node5.call("worker", queue=queue_name)
    failed = await node5.call("add", queue=queue_name, data={"mode": "fail"})
    await counts_reach(node5, queue_name, failed=1)
    version = await redis.hget(f"bull:{queue_name}:meta", "version")
    assert str(version).startswith("bullmq:5.")

    refused = await _refusal(actions.set_paused(queue_name, True))
    assert "pause refused" in refused and "BullMQ 5 queue" in refused
    assert "jobs in wait would be lost" in refused
    assert await node5.call("isPaused", queue=queue_name) is False

    # BullMQ 5 pauses it itself: its new jobs go to the paused list
    await node5.call("pause", queue=queue_name)
    for i in range(2):
        await node5.call("add", queue=queue_name, data={"i": i})
    await counts_reach(node5, queue_name, paused=2)
    assert await redis.llen(f"bull:{queue_name}:paused") == 2
    # readying a job would put it in wait, which BullMQ 5 overwrites at resume: refused
    refused = await _refusal(actions.retry(queue_name, failed))
    assert "paused the BullMQ 5 way" in refused and "Resume the queue first" in refused
    assert await node5.call("state", queue=queue_name, id=failed) == "failed"

    # resuming agrees with BullMQ 5's own resume: the BullMQ 5 worker takes the jobs
    assert await actions.set_paused(queue_name, False) == f"resumed {queue_name!r}"
    assert await node5.call("isPaused", queue=queue_name) is False
    await counts_reach(node5, queue_name, paused=0, waiting=0, completed=2)
    # and on the running BullMQ 5 queue, retrying agrees too
    assert await actions.retry(queue_name, failed) == f"retried job {failed!r}: back in wait"
    await counts_reach(node5, queue_name, failed=1, completed=2)  # it fails again, as it must
    job = await node5.call("job", queue=queue_name, id=failed)
    assert job["attemptsMade"] == 2


async def _refusal(action: Awaitable[str]) -> str:
    """The message of the ``ReadOnlyError`` an action raises."""
    with pytest.raises(ReadOnlyError) as raised:
        await action
    return str(raised.value)


async def test_a_queue_both_majors_paused_into_is_neither_resumed_nor_given_jobs(
    node5: NodeDriver, node6: NodeDriver, actions: JobActions, queue_name: str
) -> None:
    await node5.call("add", queue=queue_name, name="v5-job")
    await node5.call("pause", queue=queue_name)  # BullMQ 5: wait renamed to paused
    await node6.call("add", queue=queue_name, name="v6-job")  # BullMQ 6: into wait, paused or not
    later = await node6.call("add", queue=queue_name, opts={"delay": 600_000})
    refused = await _refusal(actions.set_paused(queue_name, False))
    assert "written by BullMQ 5 and 6 clients at once" in refused
    assert "jobs in both wait and paused" in refused
    assert "promote refused" in await _refusal(actions.promote(queue_name, later))
    assert await node6.call("isPaused", queue=queue_name) is True
    assert await node6.call("state", queue=queue_name, id=later) == "delayed"
    # removing agrees whatever the layout
    assert await actions.discard(queue_name, later) == f"discarded job {later!r}"


async def test_cancel_is_refused_on_bullmq_queues(
    node6: NodeDriver, actions: JobActions, queue_name: str
) -> None:
    job = await node6.call("add", queue=queue_name)
    refused = await _refusal(actions.cancel(queue_name, job))
    assert "BullMQ cannot stop a job from outside its worker" in refused
    assert await node6.call("state", queue=queue_name, id=job) == "waiting"
