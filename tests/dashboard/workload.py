"""Test workloads for the dashboard tests: jobs added with ``engine.Queue`` and a tiny worker.

The worker takes jobs with the engine's own scripts and completes or fails them, so the queues
hold jobs in every finished state without a real worker process; dead letters come from a real
in-process worker.
"""

from __future__ import annotations

import json
from typing import Any

from support.workers import running_worker, wait_until

from engine import Job, commands
from engine.options import Retention
from engine.queue import Queue

KEEP_ALL = Retention(-1, 0)


async def finish_jobs(queue: Queue, complete: int, fail: int) -> list[str]:
    """Take ``complete + fail`` ready jobs; complete the first ones and fail the rest for good.

    Returns the ids of the failed jobs.
    """
    lease = commands.Lease("test-token", 30_000, "test-worker", complete + fail)
    taken = await commands.move_to_active(queue.scripts, queue.keys, lease)
    failed: list[str] = []
    for index, job in enumerate(taken.jobs):
        if index < complete:
            await commands.complete_job(
                queue.scripts, queue.keys, job.id, job.token, json.dumps("ok"), KEEP_ALL
            )
        else:
            await commands.fail_job(
                queue.scripts, queue.keys, job.id, job.token, "boom", "[]", -1, KEEP_ALL
            )
            failed.append(job.id)
    return failed


async def take_jobs(queue: Queue, count: int, lock_ms: int) -> list[str]:
    """Make ``count`` ready jobs active with a lock of ``lock_ms`` that nobody renews."""
    lease = commands.Lease("test-token", lock_ms, "test-worker", count)
    taken = await commands.move_to_active(queue.scripts, queue.keys, lease)
    return [job.id for job in taken.jobs]


async def dead_letter(queue: Queue, dlq: Queue, url: str, count: int) -> list[str]:
    """``count`` jobs that fail their only attempt under a real worker, so they become dead
    letters in ``dlq``; returns their ids in ``queue``."""

    async def process(job: Job) -> Any:
        raise ValueError(f"bad payload for {job.name}")

    added = [
        await queue.add("charge", {"n": i}, attempts=1, dead_letter=dlq.name) for i in range(count)
    ]
    async with running_worker(queue.name, process, url):

        async def all_dead() -> bool:
            return (await dlq.get_counts("failed"))["failed"] == count

        await wait_until(all_dead, within=20)
    return [job.id for job in added]
