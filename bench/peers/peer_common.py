"""What the Python peer scripts share (``py_bullmq.py``, ``py_rq.py``, ``py_arq.py``).

These scripts run with each peer's own virtual environment (``bench/.peers/python/<peer>``), so
this module uses the standard library only. It gives them the command line, the JSON-lines
output, the worker protocol of ``bench.child`` (``ready``; ``go``; ``stop`` -> ``stopped`` with
the CPU seconds used since ``go``) and the steady-rate pacing of the latency scenario, so every
peer is driven exactly like ``bullmq.js`` drives Node BullMQ.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any
from urllib.parse import urlparse

MODES = ("add", "bulk", "seed", "work", "latency")
DRAIN_TIMEOUT = 300.0
"""Seconds the latency scenario waits for the worker to finish what was added."""


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """``MODE --url URL [--queue Q] [--jobs N] [--chunk C] [--concurrency C] [--rate R]
    [--seconds S] [--remove-on-complete]``; refuses any server that is not on 127.0.0.1."""
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=MODES)
    parser.add_argument("--url", required=True)
    parser.add_argument("--queue", default="bench")
    parser.add_argument("--jobs", type=int, default=0)
    parser.add_argument("--chunk", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--rate", type=float, default=500.0)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--remove-on-complete", action="store_true")
    args = parser.parse_args(argv)
    host = urlparse(args.url).hostname
    if host != "127.0.0.1":
        parser.error(f"refusing non-loopback server {host!r}")
    return args


def emit(message: dict[str, Any]) -> None:
    """One JSON object on its own line of stdout."""
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def cpu_seconds() -> float:
    """CPU used by this process and its reaped children (RQ runs each job in a child)."""
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The nearest-rank percentile ``q`` (0-1) of an ascending sequence."""
    rank = min(len(sorted_values) - 1, max(0, math.ceil(q * len(sorted_values)) - 1))
    return sorted_values[rank]


def latency_result(delays_ms: list[float], total: int, achieved_rate: float) -> dict[str, Any]:
    """The latency scenario's JSON result."""
    delays_ms.sort()
    return {
        "jobs": total,
        "measured": len(delays_ms),
        "achieved_rate": achieved_rate,
        "p50_ms": percentile(delays_ms, 0.5),
        "p99_ms": percentile(delays_ms, 0.99),
    }


async def paced_adds(
    total: int, rate: float, add: Callable[[], Awaitable[Any]]
) -> tuple[list[Any], float]:
    """Start ``add()`` ``total`` times at ``rate`` per second, each on schedule without waiting for
    the previous one (a steady arrival rate); return the results and the rate achieved."""
    tasks: list[asyncio.Task[Any]] = []
    start = time.perf_counter()
    for i in range(total):
        wait = start + i / rate - time.perf_counter()
        if wait > 0:
            await asyncio.sleep(wait)
        tasks.append(asyncio.ensure_future(add()))
    achieved = total / (time.perf_counter() - start)
    return list(await asyncio.gather(*tasks)), achieved


async def wait_until_done(remaining: Callable[[], Awaitable[int]]) -> None:
    """Poll ``remaining()`` every 50 ms until it is 0 (``TimeoutError`` after ``DRAIN_TIMEOUT``)."""
    deadline = time.monotonic() + DRAIN_TIMEOUT
    while await remaining() > 0:
        if time.monotonic() > deadline:
            raise TimeoutError(f"jobs still unfinished after {DRAIN_TIMEOUT}s")
        await asyncio.sleep(0.05)


async def _next_command() -> str:
    line = await asyncio.to_thread(sys.stdin.readline)
    return line.strip() if line else "stop"


async def serve_async_worker(
    start: Callable[[], None], stop: Callable[[], Awaitable[None]]
) -> None:
    """The ``bench.child`` protocol for an asyncio worker: ``start()`` on ``go``, ``await stop()``
    on ``stop`` (or end of input), then report the CPU used in between."""
    emit({"event": "ready"})
    cpu_at_go = cpu_seconds()
    started = False
    while True:
        command = await _next_command()
        if command == "go" and not started:
            cpu_at_go = cpu_seconds()
            start()
            started = True
        elif command == "stop":
            cpu = cpu_seconds() - cpu_at_go
            await stop()
            emit({"event": "stopped", "cpu_s": cpu})
            return


def noop() -> None:
    """RQ's job function: the benchmark measures the engine, not the work."""
    return None
