"""A producer process for the deduplication race (X1): ``python -m support.dedup_adders URL
QUEUE DEDUP_ID CONNECTIONS ADDS START_AT``. It waits until the wall clock reaches START_AT (so
every process starts together), adds ADDS jobs with the same deduplication id over CONNECTIONS
connections at once, and prints one JSON line: the ids returned, created and deduplicated."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections import Counter

from engine import Queue


async def _adder(
    url: str, queue_name: str, dedup_id: str, adds: int, out: list[tuple[str, bool]]
) -> None:
    async with Queue(queue_name, url) as queue:
        for i in range(adds):
            job = await queue.add("race", {"n": i}, deduplication={"id": dedup_id})
            out.append((job.id, job.deduplicated))


async def main(url: str, queue_name: str, dedup_id: str, connections: int, adds: int) -> None:
    """Run the adders and print the summary line."""
    results: list[tuple[str, bool]] = []
    per = adds // connections
    await asyncio.gather(
        *(_adder(url, queue_name, dedup_id, per, results) for _ in range(connections))
    )
    created = [job_id for job_id, deduplicated in results if not deduplicated]
    ids = Counter(job_id for job_id, _ in results)
    print(json.dumps({"created": created, "deduplicated": len(results) - len(created), "ids": ids}))


if __name__ == "__main__":
    url, queue_name, dedup_id, connections, adds, start_at = sys.argv[1:7]
    time.sleep(max(0.0, float(start_at) - time.time()))
    asyncio.run(main(url, queue_name, dedup_id, int(connections), int(adds)))
