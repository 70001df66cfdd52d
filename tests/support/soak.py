"""Measuring soak runs: samples of process memory (RSS from ``/proc``), the server's
``used_memory`` and the events stream's length over time, and the slope of each."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from engine import Queue


def env_number(name: str, default: float) -> float:
    """A soak parameter from the environment (so the full-length run needs no code change)."""
    raw = os.environ.get(name)
    return float(raw) if raw else default


def rss_mb(pid: int) -> float | None:
    """Resident memory of process ``pid`` in MiB, or None once it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def slope_per_min(points: Sequence[tuple[float, float]]) -> float:
    """Least-squares slope of ``(seconds, value)`` points, per minute (0 for < 2 points)."""
    if len(points) < 2:
        return 0.0
    n = len(points)
    mean_t = sum(t for t, _ in points) / n
    mean_v = sum(v for _, v in points) / n
    var = sum((t - mean_t) ** 2 for t, _ in points)
    if var == 0:
        return 0.0
    cov = sum((t - mean_t) * (v - mean_v) for t, v in points)
    return cov / var * 60


@dataclass
class Series:
    """One measured quantity over time."""

    points: list[tuple[float, float]] = field(default_factory=list)

    def add(self, t: float, value: float | None) -> None:
        if value is not None:
            self.points.append((t, value))

    def after(self, warmup: float) -> list[tuple[float, float]]:
        return [p for p in self.points if p[0] >= warmup]

    def summary(self, warmup: float) -> dict[str, float]:
        """Value at the end of the warm-up, at the end, max, and slope per minute after it."""
        late = self.after(warmup) or self.points
        if not late:
            return {}
        return {
            "at_warmup": round(late[0][1], 2),
            "end": round(late[-1][1], 2),
            "max": round(max(v for _, v in late), 2),
            "slope_per_min": round(slope_per_min(late), 3),
        }


class Sampler:
    """Samples, every ``interval`` s, the RSS of the named processes (``pids()`` gives the
    current ones), the server's used memory, the stream length and the completed total."""

    def __init__(
        self, queue: Queue, pids: Callable[[], dict[str, int]], interval: float = 2.0
    ) -> None:
        self.queue = queue
        self.pids = pids
        self.interval = interval
        self.started = time.monotonic()
        self.rss: dict[str, Series] = {}
        self.used_memory = Series()
        self.xlen = Series()
        self.completed = Series()
        self._stop = asyncio.Event()

    async def sample(self) -> None:
        t = time.monotonic() - self.started
        for name, pid in self.pids().items():
            self.rss.setdefault(name, Series()).add(t, rss_mb(pid))
        client: aioredis.Redis = self.queue.client
        memory = await client.info("memory")
        self.used_memory.add(t, int(memory["used_memory"]) / 2**20)
        self.xlen.add(t, int(await client.xlen(self.queue.keys.events)))
        self.completed.add(t, (await self.queue.get_totals())[0])

    async def run(self) -> None:
        """Sample until ``stop()``."""
        while not self._stop.is_set():
            await self.sample()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.interval)

    def stop(self) -> None:
        """End ``run()`` after the sample in progress (a flag, not a cancellation: redis-py
        may swallow a cancellation that lands inside a command, and the loop would go on)."""
        self._stop.set()


async def produce(
    queue: Queue, rate: float, seconds: float, added: list[str], options: dict[str, Any]
) -> None:
    """Add no-op jobs at ``rate`` per second for ``seconds`` (bulk adds of what is due)."""
    start = time.monotonic()
    sent = 0
    while (elapsed := time.monotonic() - start) < seconds:
        due = min(int(rate * elapsed) - sent, 2_000)
        if due > 0:
            jobs = await queue.add_bulk([("noop", {}, options) for _ in range(due)])
            added.extend(job.id for job in jobs)
            sent += due
        await asyncio.sleep(0.02)


def monitor_figures(path: Path) -> dict[str, Any]:
    """Snapshots the monitor child wrote: how many, p50/p99 seconds between them, the stalled
    job ids it showed."""
    lines = (
        [json.loads(x) for x in path.read_text().splitlines() if x.strip()] if path.exists() else []
    )
    gaps = sorted(float(x["gap_s"]) for x in lines[1:])
    stalled = [j for x in lines for j in x["stalled"]]

    def pct(p: float) -> float:
        return round(gaps[min(int(p * len(gaps)), len(gaps) - 1)], 3) if gaps else 0.0

    return {
        "snapshots": len(lines),
        "gap_p50_s": pct(0.5),
        "gap_p99_s": pct(0.99),
        "stalled": stalled,
    }
