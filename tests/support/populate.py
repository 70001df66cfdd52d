"""Queues filled with jobs in every state, made with the engine's own scripts (no worker)."""

from __future__ import annotations

from engine import Queue, commands
from engine.options import Retention

KEEP_ALL = Retention(-1, 0)


async def finish(queue: Queue, complete: int, fail: int, hold: int = 0) -> list[str]:
    """Take ``complete + fail + hold`` ready jobs: complete the first, fail the next for good,
    and leave the last ``hold`` active under a 30 s lock nobody renews. Returns the ids taken."""
    lease = commands.Lease("populate", 30_000, "populate-worker", complete + fail + hold)
    taken = await commands.move_to_active(queue.scripts, queue.keys, lease)
    for job in taken.jobs[:complete]:
        await commands.complete_job(queue.scripts, queue.keys, job.id, job.token, '"ok"', KEEP_ALL)
    for job in taken.jobs[complete : complete + fail]:
        await commands.fail_job(
            queue.scripts, queue.keys, job.id, job.token, "boom", "[]", -1, KEEP_ALL
        )
    return [job.id for job in taken.jobs]


async def every_state(queue: Queue) -> None:
    """4 wait, 1 prioritized, 1 delayed, 2 completed, 2 failed, 1 active: 11 jobs."""
    await queue.add_bulk([("j", {"i": i}) for i in range(9)])
    await queue.add("later", {}, delay=3_600_000)
    await queue.add("urgent", {}, priority=3)
    await finish(queue, complete=2, fail=2, hold=1)
