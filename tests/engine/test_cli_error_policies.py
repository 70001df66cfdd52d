"""Error policies in a real ``corral worker`` process (``--error-policy`` and
``--job-error-policies`` name module attributes, as ``--types`` does), and a timeout in a
sandboxed child: the child is killed at the deadline and the pool goes on with a new one."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
from support.ledger import read_ledger
from support.workers import WorkerProcess, wait_until

from engine import Backoff, JobState, Queue

pytestmark = pytest.mark.timeout(120)


async def _all_finished(queue: Queue, job_ids: list[str], within: float = 40) -> None:
    async def finished() -> bool:
        states = [await queue.get_job_state(job_id) for job_id in job_ids]
        return all(s in (JobState.FAILED, JobState.COMPLETED) for s in states)

    await wait_until(finished, within=within)


async def test_queue_and_name_policies_from_the_command_line(
    redis_url: str, queue_name: str, procs: list[WorkerProcess]
) -> None:
    async with Queue(queue_name, redis_url) as queue:
        retry = {"attempts": 3, "backoff": Backoff.fixed(20)}
        missing_key = await queue.add("sync", {"error": "key"}, **retry)
        lost = await queue.add("sync", {"error": "connection"}, **retry)
        charge = await queue.add("charge", {"error": "connection"}, **retry)
        procs.append(
            WorkerProcess(
                "support.policy_jobs:raises", queue_name, redis_url,
                extra_args=("--error-policy", "support.policy_jobs:QUEUE_POLICY",
                            "--job-error-policies", "support.policy_jobs:NAME_POLICIES"),
            )
        )  # fmt: skip
        await _all_finished(queue, [missing_key.id, lost.id, charge.id])
        made = {}
        for job in (missing_key, lost, charge):
            done = await queue.get_job(job.id)
            assert done is not None and done.state is JobState.FAILED
            made[job.id] = done.attempts_made
        assert made[missing_key.id] == 1  # the queue's fail_on: no retry
        assert made[lost.id] == 3  # retried until its attempts ran out
        assert made[charge.id] == 1  # the name's policy fails it at once


def test_a_bad_policy_target_is_refused_with_its_name(redis_url: str, queue_name: str) -> None:
    proc = WorkerProcess(
        "support.policy_jobs:raises", queue_name, redis_url,
        extra_args=("--error-policy", "support.policy_jobs:NOT_A_POLICY"),
    )  # fmt: skip
    try:
        assert proc.wait(30) == 2
        output = proc.output()
        assert "cannot load error policies" in output
        assert "support.policy_jobs:NOT_A_POLICY is dict, not an ErrorPolicy" in output
    finally:
        proc.stop()


async def test_timeout_kills_the_sandboxed_child(
    redis_url: str, queue_name: str, tmp_path: Path, procs: list[WorkerProcess]
) -> None:
    ledger = tmp_path / "ledger.jsonl"
    async with Queue(queue_name, redis_url) as queue:
        stuck = await queue.add("crunch", {"sleep": 60})  # CPU-bound for a minute
        procs.append(
            WorkerProcess(
                "support.sandbox_jobs:cpu_job", queue_name, redis_url, ledger=ledger,
                extra_args=("--sandbox", "1", "--timeout-ms", "500"),
            )
        )  # fmt: skip
        await _all_finished(queue, [stuck.id])
        job = await queue.get_job(stuck.id)
        assert job is not None and job.state is JobState.FAILED
        assert job.failed_reason == "timed out after 0.5 s"
        (start,) = [x for x in read_ledger(ledger) if x["job_id"] == stuck.id]
        child = int(str(start["pid"]))

        def gone() -> bool:
            try:
                os.kill(child, 0)
            except ProcessLookupError:
                return True
            return False

        async def child_gone() -> bool:
            return await asyncio.to_thread(gone)

        await wait_until(child_gone, within=20)  # killed, not left running in the background

        quick = await queue.add("crunch", {"sleep": 0})
        await _all_finished(queue, [quick.id])
        assert await queue.get_job_state(quick.id) is JobState.COMPLETED
        (later,) = [x for x in read_ledger(ledger) if x["job_id"] == quick.id and
                    x["kind"] == "finish"]  # fmt: skip
        assert later["pid"] != child  # a new child ran it
