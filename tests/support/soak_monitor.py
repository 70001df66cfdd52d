"""``python -m support.soak_monitor URL QUEUE OUT``: the dashboard's data layer attached to a
queue during a soak run, in its own process (so its memory can be measured alone). Appends one
JSON line per snapshot to ``OUT``: seconds since the previous snapshot, the waiting count it
saw, and the stalled job ids it saw for the first time."""

from __future__ import annotations

import asyncio
import json
import sys
import time

from dashboard.corral_backend import CorralBackend
from dashboard.monitor import QueueMonitor
from support.soak import run_as_instrument


async def watch(url: str, queue: str, out: str) -> None:
    """Run the monitor until killed."""
    monitor = QueueMonitor(CorralBackend(), url, queues=[queue], poll_interval=1.0)
    seen: set[str] = set()
    last = time.monotonic()
    with open(out, "a", buffering=1) as sink:  # noqa: ASYNC230 - one short line per snapshot
        async for snapshot in monitor.snapshots():
            now = time.monotonic()
            reading = snapshot.queue(queue)
            new = [e.job_id for e in snapshot.stalled_events if e.entry_id not in seen]
            seen.update(e.entry_id for e in snapshot.stalled_events)
            line = {
                "gap_s": round(now - last, 4),
                "wait": None if reading is None else reading.counts.wait,
                "stalled": new,
            }
            sink.write(json.dumps(line) + "\n")
            last = now


if __name__ == "__main__":
    run_as_instrument()
    asyncio.run(watch(*sys.argv[1:4]))
