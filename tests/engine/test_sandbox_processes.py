"""W9: a real ``corral worker --sandbox`` process whose children are SIGKILLed mid-job, checked
against the execution ledger."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from support.ledger import check_ledger, read_ledger
from support.streams import stream_events
from support.workers import WorkerProcess, wait_until

from engine import JobState, Queue

CPU_JOB = "support.sandbox_jobs:cpu_job"
SIGKILL_REASON = "ProcessorExited: processor exited: signal SIGKILL"


def _starts(ledger: Path, job_id: str) -> list[dict[str, object]]:
    return [x for x in read_ledger(ledger) if x["kind"] == "start" and x["job_id"] == job_id]


@pytest.mark.timeout(120)
async def test_w9_killed_pool_child_fails_its_job_by_policy_and_is_replaced(
    redis_url: str,
    queue_name: str,
    redis: aioredis.Redis,
    tmp_path: Path,
    procs: list[WorkerProcess],
) -> None:
    """W9: SIGKILL the children running two jobs; each job fails with "processor exited: signal
    SIGKILL" (retried when it has attempts left), the worker stays up, the pool replaces the
    children and the next jobs succeed, each exactly once."""
    ledger = tmp_path / "ledger.jsonl"
    async with Queue(queue_name, redis_url) as queue:
        retried = await queue.add("cpu", {"first_sleep": 60}, attempts=2)
        final = await queue.add("cpu", {"first_sleep": 60}, attempts=1)
        worker = WorkerProcess(
            CPU_JOB, queue_name, redis_url, ledger=ledger, concurrency=2, extra_args=("--sandbox",)
        )
        procs.append(worker)

        async def both_started() -> bool:
            return bool(_starts(ledger, retried.id) and _starts(ledger, final.id))

        await wait_until(both_started, within=30)
        victims = {int(str(_starts(ledger, j)[0]["pid"])) for j in (retried.id, final.id)}
        assert len(victims) == 2 and worker.proc.pid not in victims
        for pid in victims:
            os.kill(pid, signal.SIGKILL)

        async def settled() -> bool:
            return (await queue.get_counts("completed", "failed")) == {"completed": 1, "failed": 1}

        await wait_until(settled, within=30)
        job = await queue.get_job(final.id)
        assert job is not None and job.state is JobState.FAILED
        assert job.failed_reason == SIGKILL_REASON
        job = await queue.get_job(retried.id)
        assert job is not None and job.state is JobState.COMPLETED
        assert job.returnvalue["attempt"] == 2
        assert job.returnvalue["pid"] not in victims
        (retrying,) = await stream_events(redis, queue_name, "retrying")
        assert (retrying["job_id"], retrying["failed_reason"]) == (retried.id, SIGKILL_REASON)

        more = await queue.add_bulk([("cpu", {"sleep": 0.05}) for _ in range(10)])

        async def all_done() -> bool:
            return (await queue.get_counts("completed"))["completed"] == 11

        await wait_until(all_done, within=30)
        assert worker.proc.poll() is None  # the worker never went down
        pids = {
            (await queue.get_job(j.id)).returnvalue["pid"]  # type: ignore[union-attr]
            for j in more
        }
        assert pids and not pids & victims

        # every job accounted for: completed, or failed for good by its policy
        ended = set(await queue.get_job_ids("completed", 0, -1)) | {final.id}
        check = check_ledger(ledger, {retried.id, final.id, *(j.id for j in more)}, ended)
        assert not check.lost and not check.duplicated and not check.unexpected
        assert check.starts[retried.id] == 2 and check.finishes[retried.id] == 1
        assert check.finishes[final.id] == 0

        worker.signal(signal.SIGTERM)
        assert worker.wait(20) == 0
