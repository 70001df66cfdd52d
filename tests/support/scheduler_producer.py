"""``python -m support.scheduler_producer URL QUEUE SCHEDULER ROUNDS PATTERN``: upsert the same
cron job scheduler ROUNDS times with short random pauses, as each process of an app does when
it starts, then exit. Its jobs sleep 50 ms in ``support.jobs:ledger_job``."""

from __future__ import annotations

import asyncio
import random
import sys

from engine import Queue


async def upsert(url: str, queue_name: str, scheduler_id: str, rounds: int, pattern: str) -> None:
    """Upsert scheduler ``scheduler_id`` with cron ``pattern`` ``rounds`` times."""
    async with Queue(queue_name, url) as queue:
        for _ in range(rounds):
            await queue.upsert_job_scheduler(
                scheduler_id, pattern=pattern, job_name=scheduler_id, job_data={"sleep": 0.05}
            )
            await asyncio.sleep(random.uniform(0, 0.15))


if __name__ == "__main__":
    url, queue_name, scheduler_id, rounds, pattern = sys.argv[1:6]
    asyncio.run(upsert(url, queue_name, scheduler_id, int(rounds), pattern))
