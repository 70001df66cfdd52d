"""Measuring soak runs: samples of process memory (RSS from ``/proc``), the server's
``used_memory`` and the events stream's length over time, and the slope of each; the plan's
memory criterion; and the figures of the real dashboard (``support.soak_dash``: refresh and
keypress times; ``support.traced_dash``: allocation sites, and those that grew monotonically)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import math
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


INSTRUMENT_NICE = 10
"""CPU priority given up by the processes that only observe a soak run (the dashboard's traced
twin, the monitor alone): on a machine the workload keeps busy they take what the measured
dashboard, the workers and the server leave, instead of slowing the timed keypresses."""


def run_as_instrument() -> None:
    """Lower this process's CPU priority by ``INSTRUMENT_NICE``."""
    os.nice(INSTRUMENT_NICE)


def rss_mb(pid: int) -> float | None:
    """Resident memory of process ``pid`` in MiB, or None once it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time process ``pid`` has used, or None once it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


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


# -- the real dashboard (support.soak_dash and support.traced_dash) ------------------------------

RSS_SLOPE_MAX = 1.0
"""MB/min after the warm-up, for worker and dashboard RSS (the plan's L1)."""
END_OVER_WARMUP_MAX = 1.10
"""End value over the value at the end of the warm-up: RSS, and the server's used memory."""
SITE_GROWTH_KB = 256.0
"""An allocation site grows monotonically if its size rises at every sample after the warm-up
and by more than this overall."""
REPO_ROOT = Path(__file__).resolve().parents[2]


def read_lines(path: Path) -> list[dict[str, Any]]:
    """The JSON lines of ``path`` (none if it does not exist)."""
    if not path.exists():
        return []
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def timings(values_ms: Sequence[float]) -> dict[str, float]:
    """How many, p50, p99 (nearest rank) and max of some times in ms."""
    ordered = sorted(values_ms)
    if not ordered:
        return {"n": 0}

    def pct(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))], 1)

    return {"n": len(ordered), "p50": pct(0.5), "p99": pct(0.99), "max": round(ordered[-1], 1)}


def memory_ok(summary: dict[str, float], slope_max: float | None = RSS_SLOPE_MAX) -> bool:
    """The plan's memory criterion on a ``Series.summary``: end within 10 % of the value at the
    end of the warm-up and (if ``slope_max``) a slope after it of at most ``slope_max``/min."""
    if not summary:
        return False
    flat = summary["end"] <= summary["at_warmup"] * END_OVER_WARMUP_MAX
    return flat and (slope_max is None or summary["slope_per_min"] <= slope_max)


def spans(series: Series, warmup: float, end: float, slack: float = 5.0) -> bool:
    """The process was sampled from the warm-up (or before) to ``end``: it lived the run."""
    return (
        bool(series.points)
        and series.points[0][0] <= warmup
        and series.points[-1][0] >= end - slack
    )


def short_site(site: str) -> str:
    """``file:line`` relative to the project or to the library folder it is in."""
    root = f"{REPO_ROOT}/"
    if site.startswith(root):
        return site[len(root) :]
    for marker in ("site-packages/", "/lib/python3."):
        if marker in site:
            rest = site.split(marker, 1)[1]
            return rest if marker == "site-packages/" else "stdlib/" + rest.split("/", 1)[-1]
    return site


def growing_sites(samples: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Allocation sites whose size rose at every one of ``samples`` (at least 3), by more than
    ``SITE_GROWTH_KB`` in all. A site missing from a sample held less than the traced dash's
    ``MIN_KB`` there, taken as 0."""
    if len(samples) < 3:
        return []
    sizes: dict[str, list[float]] = {}
    for i, sample in enumerate(samples):
        for site in sample["top"]:
            sizes.setdefault(site["site"], [0.0] * len(samples))[i] = float(site["kb"])
    return [
        {"site": short_site(site), "kb": [round(v) for v in kb]}
        for site, kb in sizes.items()
        if all(b > a for a, b in itertools.pairwise(kb)) and kb[-1] - kb[0] > SITE_GROWTH_KB
    ]


def _top(sample: dict[str, Any], n: int = 10) -> dict[str, float]:
    return {short_site(s["site"]): s["kb"] for s in sample["top"][:n]}


def _grew_most(first: dict[str, Any], last: dict[str, Any], n: int = 5) -> dict[str, float]:
    before = {s["site"]: float(s["kb"]) for s in first["top"]}
    after = {s["site"]: float(s["kb"]) for s in last["top"]}
    growth = {site: kb - before.get(site, 0.0) for site, kb in after.items()}
    ranked = sorted(growth.items(), key=lambda item: -item[1])[:n]
    return {short_site(site): round(kb, 1) for site, kb in ranked if kb > 0}


def trace_figures(trace: Path, started: float, warmup: float) -> dict[str, Any]:
    """The traced dashboard's samples (``started``: monotonic s of the load's start): traced
    memory, tracemalloc's own, the top sites after the warm-up and at the end of the run, the
    sites that grew most between them, and the sites that grew monotonically."""
    lines = [x for x in read_lines(trace) if not x.get("final")]
    late = [x for x in lines if x["snapshot_at"] - started >= warmup]
    if not lines:
        return {"samples": 0, "growing": []}
    first, last = (late[0], late[-1]) if late else (lines[0], lines[-1])
    return {
        "samples": len(lines),
        "samples_after_warmup": len(late),
        "traced_mb": {"at_warmup": first["traced_mb"], "end": last["traced_mb"]},
        "tracemalloc_own_mb_end": last["overhead_mb"],
        "traces_end": last["traces"],
        "snapshot_s_max": max(x["snapshot_s"] for x in lines),
        "top_at_warmup_kb": _top(first),
        "top_end_kb": _top(last),
        "grew_most_kb": _grew_most(first, last),
        "growing": growing_sites(late),
    }


def screen_figures(watch: Path, window: tuple[float, float]) -> dict[str, Any]:
    """Refresh and keypress times of the watched dashboard within ``window`` (monotonic s)."""
    lines = read_lines(watch)
    inside = [x for x in lines if "ms" in x and window[0] <= x["at"] <= window[1]]
    keys = [x for x in inside if x["kind"] == "key"]
    return {
        "mode": next((x["mode"] for x in lines if x["kind"] == "shown"), None),
        "errors": [x["what"] for x in lines if x["kind"] == "error"],
        "probe_errors": sum(1 for x in lines if x["kind"] == "probe_error"),
        "watcher_ended": any(x["kind"] == "end" for x in lines),
        "refresh_ms": timings([x["ms"] for x in inside if x["kind"] == "refresh"]),
        "keypress_ms": {
            **timings([x["ms"] for x in keys]),
            **{k: timings([x["ms"] for x in keys if x["key"] == k]) for k in ("enter", "q")},
        },
    }
