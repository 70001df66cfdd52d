"""A Corral worker process for the harness: ``python -m bench.corral_worker --url URL ...``.

It speaks the JSON-lines protocol of ``bench.child``: ``ready`` once connected, runs on
``go``, closes gracefully on ``stop`` and reports the CPU seconds used in between.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Sequence

from bench.jobs import noop
from engine import Worker, gc_policy, loops


def _emit(message: dict[str, object]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


async def serve(url: str, queue: str, concurrency: int) -> None:
    """Run one worker as the harness commands on stdin."""
    worker = Worker(queue, noop, url, concurrency=concurrency)
    await worker.client.ping()  # connect before the clock starts, as BullMQ's waitUntilReady
    _emit({"event": "ready"})
    running: asyncio.Task[None] | None = None
    cpu_at_go = 0.0
    while True:
        line = await asyncio.to_thread(sys.stdin.readline)
        command = line.strip()
        if command == "go" and running is None:
            cpu_at_go = time.process_time()
            running = asyncio.create_task(worker.run())
        elif command == "stop" or not line:
            cpu = time.process_time() - cpu_at_go
            await worker.close()
            if running is not None:
                await running
            _emit({"event": "stopped", "cpu_s": cpu})
            return


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the arguments and serve until told to stop."""
    parser = argparse.ArgumentParser(prog="python -m bench.corral_worker")
    parser.add_argument("--url", required=True)
    parser.add_argument("--queue", required=True)
    parser.add_argument("--concurrency", type=int, default=1)
    args = parser.parse_args(argv)
    gc_policy.settle()  # as `corral worker` does before it runs
    loops.run(serve(args.url, args.queue, args.concurrency))  # `corral worker`'s default loop
    return 0


if __name__ == "__main__":
    sys.exit(main())
