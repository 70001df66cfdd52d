"""``python -m support.produce URL QUEUE JOBS_JSON``: add jobs from a separate process (one
whose clock a test may skew) and print one JSON line: the ids and this process's wall clock.

``JOBS_JSON`` is a list of ``[name, data, opts]``.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

from engine import Queue


async def produce(url: str, queue_name: str, jobs: list[list[object]]) -> dict[str, object]:
    """Add ``jobs`` with one ``add_bulk``; return their ids and the local clock (ms)."""
    async with Queue(queue_name, url) as queue:
        added = await queue.add_bulk([(str(n), d, dict(o)) for n, d, o in jobs])  # type: ignore[call-overload]
    return {"ids": [job.id for job in added], "clock_ms": int(time.time() * 1000)}


if __name__ == "__main__":
    url, queue_name, spec = sys.argv[1:4]
    print(json.dumps(asyncio.run(produce(url, queue_name, json.loads(spec)))))
