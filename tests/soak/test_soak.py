"""Soak runs L1-L3 (opt-in: ``python -m pytest -m soak tests/soak -s``): sustained load with
the real dashboard attached, the same with workers SIGKILLed and clients killed, and a large
backlog drained. Each prints its figures as one JSON line (and appends it to
``$CORRAL_SOAK_REPORT`` if set).

In L1 and L2 the dashboard is a real ``corral dash`` on an 80x24 pseudo-terminal, watched from
its own process (``support.soak_dash``): its RSS is sampled like the workers', the time until a
change of a probe queue shows on the overview is measured every 0.25 s and the time until a
keypress shows its effect every 10 s. A twin of it runs under tracemalloc (which would triple
the measured one's CPU), gets the same keys, and its allocation sites are checked for monotonic
growth. L2 (for the stalled events it reports) and L3 also run the dashboard's data layer
alone (``support.soak_monitor``). The twin and the monitor only observe: they run at a lower
CPU priority (``support.soak.INSTRUMENT_NICE``), so they do not slow the timed dashboard. The
memory criteria are checked only when the warm-up is the plan's 2 minutes (runs of at least
600 s); shorter runs report them.

Durations and sizes come from the environment, so the full runs need no code change:
``CORRAL_SOAK_SECONDS`` (default 60; the plan's full run is 600), ``CORRAL_SOAK_RATE`` (jobs/s,
default 2000), ``CORRAL_SOAK_KILL_EVERY`` (s between worker kills in L2, default 15; plan: 60),
``CORRAL_SOAK_CLIENT_KILL_EVERY`` (default 22; plan: 90), ``CORRAL_SOAK_BACKLOG`` (L3 jobs,
default 200,000; plan: 1,000,000). ``CORRAL_SOAK_TRACEMALLOC=0`` leaves the traced twin out (its
CPU then goes to the rest).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from support.invariants import assert_invariants
from support.ledger import check_ledger, read_ledger
from support.server import FaultServer
from support.soak import (
    REPO_ROOT,
    Sampler,
    cpu_seconds,
    env_number,
    memory_ok,
    monitor_figures,
    produce,
    read_lines,
    screen_figures,
    spans,
    trace_figures,
)
from support.workers import TESTS_DIR, WorkerProcess, wait_until

from engine import Queue

pytestmark = [pytest.mark.soak, pytest.mark.timeout(7200)]

LEDGER_JOB = "support.jobs:ledger_job"
WORKERS = 4
CONCURRENCY = 50
KEEP = {"remove_on_complete": 1000}
MAX_EVENTS = 10_000
EVENTS_SLACK = 200  # approximate (~) trimming leaves up to one stream node more
QUEUE = "soak"
PROBE = "soak-probe"
"""A queue no worker takes from: the dashboard shows it beside the soak queue, and the watcher
changes its wait count to time the refresh."""
PLAN_WARMUP = 120.0
REFRESH_P99_MS = 250.0
KEYPRESS_MS = 200.0


@contextlib.contextmanager
def monitor_process(url: str, out: Path) -> Iterator[subprocess.Popen[bytes]]:
    """The dashboard's monitor in its own process, writing its snapshots to ``out``."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "support.soak_monitor", url, QUEUE, str(out)],
        cwd=TESTS_DIR,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait(10)


@dataclass
class Dashboard:
    """The watched ``corral dash``: its watcher process, the pids of the dashboard and of its
    traced twin, and the files the watcher and the tracer write."""

    watcher: subprocess.Popen[bytes]
    watch: Path
    trace: Path
    errors: Path
    pid: int = 0
    traced_pid: int | None = None
    status: int | None = None
    """The watcher's exit status, once stopped: 0 if it measured to the end."""

    @classmethod
    def start(cls, url: str, tmp_path: Path, trace_every: float) -> Dashboard:
        """Start ``support.soak_dash`` on the soak and probe queues."""
        watch, trace = tmp_path / "dash-watch.jsonl", tmp_path / "dash-trace.jsonl"
        errors = tmp_path / "dash-watch.err"
        paths = [str(REPO_ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]  # for bench
        with errors.open("w") as sink:
            watcher = subprocess.Popen(
                [
                    sys.executable, "-m", "support.soak_dash", "--url", url, "--queue", QUEUE,
                    "--probe", PROBE, "--out", str(watch), "--trace", str(trace),
                    "--trace-every", str(trace_every),
                ],
                cwd=TESTS_DIR,
                env={**os.environ, "PYTHONPATH": os.pathsep.join(paths)},
                stdout=subprocess.DEVNULL,
                stderr=sink,
            )  # fmt: skip
        return cls(watcher, watch, trace, errors)

    def stop(self) -> int | None:
        """Let the watcher quit the dashboard (the tracer writes its last sample), or kill it;
        its exit status (None if it had exited already: it failed)."""
        if self.watcher.poll() is not None:
            return None
        self.watcher.terminate()
        try:
            return self.watcher.wait(60)
        except subprocess.TimeoutExpired:
            self.watcher.kill()
            self.watcher.wait(10)
            return None


@contextlib.asynccontextmanager
async def dashboard_process(
    url: str, tmp_path: Path, trace_every: float
) -> AsyncIterator[Dashboard]:
    """``corral dash`` on the soak and probe queues, watched, once both are on screen."""
    dash = Dashboard.start(url, tmp_path, trace_every)

    async def started() -> bool:
        kinds = {x["kind"] for x in read_lines(dash.watch)}
        return "shown" in kinds or "error" in kinds or dash.watcher.poll() is not None

    try:
        await wait_until(started, within=120, interval=0.2)
        lines = read_lines(dash.watch)
        errors = dash.errors.read_text()[-2000:]
        assert any(x["kind"] == "shown" for x in lines), (lines, errors)
        start = next(x for x in lines if x["kind"] == "start")
        dash.pid, dash.traced_pid = start["pid"], start["traced_pid"]
        yield dash
    finally:
        dash.status = await asyncio.to_thread(dash.stop)


def _worker(url: str, ledger: Path) -> WorkerProcess:
    return WorkerProcess(
        LEDGER_JOB, QUEUE, url, ledger=ledger, concurrency=CONCURRENCY,
        lock_duration=5000, stalled_interval=2000,
        log_file=ledger.with_name(f"worker-{time.monotonic_ns()}.log"),
    )  # fmt: skip


def _log_lines(tmp_path: Path) -> dict[str, int]:
    """Lines the workers logged, by level, and the lock-lost warnings among them."""
    counts: dict[str, int] = {}
    for path in tmp_path.glob("worker-*.log"):
        for line in path.read_text().splitlines():
            parts = line.split()
            level = parts[2] if len(parts) > 2 else "?"
            counts[level] = counts.get(level, 0) + 1
            if "lost the lock" in line:
                counts["lock_lost"] = counts.get("lock_lost", 0) + 1
            if "Traceback" in line:
                counts["tracebacks"] = counts.get("tracebacks", 0) + 1
    return counts


def _report(name: str, figures: dict[str, Any]) -> None:
    line = json.dumps({"scenario": name, **figures})
    print(line)
    path = os.environ.get("CORRAL_SOAK_REPORT")
    if path:
        with open(path, "a") as out:
            out.write(line + "\n")


async def _drained(queue: Queue, n: int) -> bool:
    return sum(await queue.get_totals()) >= n


async def _load(
    name: str,
    url: str,
    tmp_path: Path,
    procs: list[WorkerProcess],
    *,
    kill_every: float | None = None,
    client_kill_every: float | None = None,
    server: FaultServer | None = None,
) -> dict[str, Any]:
    """Run the sustained load (L1, or L2 with kills) with the real dashboard attached (and, in
    L2, the monitor alone for the stalled events it sees); report the figures, then assert the
    criteria; return the figures."""
    seconds = env_number("CORRAL_SOAK_SECONDS", 60)
    rate = env_number("CORRAL_SOAK_RATE", 2000)
    warmup = max(min(PLAN_WARMUP, seconds * 0.2), 10.0)
    traced = env_number("CORRAL_SOAK_TRACEMALLOC", 1) != 0
    trace_every = min(60.0, max(5.0, seconds / 10)) if traced else 0.0
    ledger, seen = tmp_path / "ledger.jsonl", tmp_path / "monitor.jsonl"
    with_monitor = kill_every is not None
    workers = [_worker(url, ledger) for _ in range(WORKERS)]
    procs.extend(workers)
    killed: list[int] = []
    added: list[str] = []
    async with Queue(QUEUE, url, max_events=MAX_EVENTS) as queue:
        async with contextlib.AsyncExitStack() as attached:
            dash = await attached.enter_async_context(dashboard_process(url, tmp_path, trace_every))
            monitor = attached.enter_context(monitor_process(url, seen)) if with_monitor else None

            def pids() -> dict[str, int]:
                out = {f"worker{i}-pid{w.proc.pid}": w.proc.pid for i, w in enumerate(workers)}
                out["dashboard"] = dash.pid
                if dash.traced_pid is not None:
                    out["dashboard-traced"] = dash.traced_pid
                return out if monitor is None else {**out, "monitor": monitor.pid}

            sampler = Sampler(queue, pids)
            sampling = asyncio.create_task(sampler.run())
            stop_faults = asyncio.Event()
            faults = asyncio.create_task(
                _faults(
                    url, ledger, workers, procs, killed, kill_every, client_kill_every, server,
                    stop_faults,
                )
            )  # fmt: skip
            start_done = (await queue.get_totals())[0]
            cpu_before = {
                pid: cpu_seconds(pid) or 0.0 for pid in (dash.pid, dash.traced_pid) if pid
            }
            load_before = os.getloadavg()[0]
            started = time.monotonic()
            await produce(queue, rate, seconds, added, KEEP)
            elapsed = time.monotonic() - started
            cpu = {pid: (cpu_seconds(pid) or 0.0) - used for pid, used in cpu_before.items()}
            load_after = os.getloadavg()[0]
            done_in_window = (await queue.get_totals())[0] - start_done
            stop_faults.set()
            await faults
            await wait_until(lambda: _drained(queue, len(added)), within=300, interval=0.5)
            drained_after = time.monotonic() - started - elapsed
            sampler.stop()
            await sampling
        totals = await queue.get_totals()
        finished = {str(x["job_id"]) for x in read_ledger(ledger) if x["kind"] == "finish"}
        in_flight_at_kills = _in_flight_at_kills(ledger, killed)
        check = check_ledger(ledger, set(added), finished, recovered=in_flight_at_kills)
        await assert_invariants(queue.client, QUEUE)
    rss = {k: s.summary(warmup) for k, s in sampler.rss.items()}
    end_t = max((s.points[-1][0] for s in sampler.rss.values() if s.points), default=0.0)
    lived = [k for k, s in sampler.rss.items() if spans(s, warmup, end_t)]
    screen = screen_figures(dash.watch, (started, started + elapsed))
    if dash.status != 0:
        screen["errors"].append(f"watcher exit {dash.status}: {dash.errors.read_text()[-2000:]}")
    allocations = trace_figures(dash.trace, started, warmup) if traced else {"off": True}
    figures: dict[str, Any] = {
        "seconds": seconds,
        "target_rate": rate,
        "added_rate": round(len(added) / elapsed, 1),
        "completed_rate_in_window": round(done_in_window / elapsed, 1),
        "rate_reached": done_in_window / elapsed >= rate * 0.98,
        "drain_after_window_s": round(drained_after, 1),
        "jobs": len(added),
        "completed_records": totals[0],
        "failed_records": totals[1],
        "lost": len(check.lost),
        "duplicated": len(check.duplicated),
        "unexpected": len(check.unexpected),
        "reran_after_kill": len(check.recovered),
        "worker_kills": len(killed),
        "warmup_s": warmup,
        "rss_mb": rss,
        "redis_used_memory_mb": sampler.used_memory.summary(warmup),
        "xlen_max": max((v for _, v in sampler.xlen.points), default=0),
        "host_load_1min": [round(load_before, 1), round(load_after, 1)],
        "dashboard": {
            "cpu_pct_of_a_core": round(cpu[dash.pid] / elapsed * 100, 1),
            "traced_twin_cpu_pct_of_a_core": (
                round(cpu[dash.traced_pid] / elapsed * 100, 1) if dash.traced_pid else None
            ),
            **screen,
            "tracemalloc": allocations,
        },
        "worker_log_lines": _log_lines(tmp_path),
    }
    if with_monitor:
        figures["monitor"] = {k: v for k, v in monitor_figures(seen).items() if k != "stalled"}
        figures["stalled_events_seen_by_monitor"] = len(monitor_figures(seen)["stalled"])
    figures["criteria"] = criteria = _criteria(figures, lived, warmup >= PLAN_WARMUP)
    _report(name, figures)
    assert check.lost == set() and check.unexpected == set(), figures
    assert check.duplicated == set(), figures
    assert totals == (len(added), 0), figures  # one completion record per job, no failure
    assert figures["xlen_max"] <= MAX_EVENTS + EVENTS_SLACK, figures
    failed = [k for k, v in criteria.items() if v is False]
    assert not failed, (failed, figures)
    return figures


def _criteria(figures: dict[str, Any], lived: list[str], memory_checked: bool) -> dict[str, Any]:
    """The plan's L1 criteria beyond loss and the stream's cap: True or False, or a string when
    not checked (the rate: "not reached" is reported, never failed)."""
    dash = figures["dashboard"]
    refresh, keys = dash["refresh_ms"], dash["keypress_ms"]
    out: dict[str, Any] = {
        "rate": "reached" if figures["rate_reached"] else "not reached",
        "dashboard_screen_errors": not dash["errors"],
        "refresh_p99_lt_250ms": refresh.get("p99", float("inf")) < REFRESH_P99_MS,
        "keypress_p99_le_200ms": keys.get("p99", float("inf")) <= KEYPRESS_MS,
    }
    if not memory_checked:
        why = f"not checked: the warm-up is shorter than the plan's {PLAN_WARMUP:.0f} s"
        out["memory"] = why
        return out
    for name in lived:  # the traced twin's RSS holds tracemalloc's tables: reported only
        if name.startswith("worker") or name == "dashboard":
            out[f"rss_{name}"] = memory_ok(figures["rss_mb"][name])
    out["redis_used_memory_within_10pct"] = memory_ok(
        figures["redis_used_memory_mb"], slope_max=None
    )
    if not dash["tracemalloc"].get("off"):
        out["tracemalloc_no_monotonic_growth"] = not dash["tracemalloc"]["growing"]
    return out


def _in_flight_at_kills(ledger: Path, killed: list[int]) -> list[str]:
    """Jobs a SIGKILLed worker had started and that another process started again: the jobs
    in flight at a kill, which the stalled check recovers (each may finish twice). The process
    that ran one again may have been killed later itself: any other process counts."""
    starters: dict[str, set[int]] = {}
    for line in read_ledger(ledger):
        if line["kind"] == "start":
            starters.setdefault(str(line["job_id"]), set()).add(int(str(line["pid"])))
    victims = set(killed)
    return sorted(job for job, pids in starters.items() if pids & victims and len(pids) > 1)


async def _faults(
    url: str,
    ledger: Path,
    workers: list[WorkerProcess],
    procs: list[WorkerProcess],
    killed: list[int],
    kill_every: float | None,
    client_kill_every: float | None,
    server: FaultServer | None,
    stop: asyncio.Event,
) -> None:
    """L2: SIGKILL one worker (never worker 0, whose memory is the long-lived sample) every
    ``kill_every`` s and start a fresh one; CLIENT KILL every ``client_kill_every`` s."""
    if kill_every is None and client_kill_every is None:
        return
    start = time.monotonic()
    next_kill = kill_every or float("inf")
    next_client = client_kill_every or float("inf")
    victim = 1
    while not stop.is_set():
        await asyncio.sleep(0.2)
        t = time.monotonic() - start
        if t >= next_kill and kill_every is not None:
            old = workers[victim]
            killed.append(old.proc.pid)
            await asyncio.to_thread(old.kill)
            workers[victim] = _worker(url, ledger)
            procs.append(workers[victim])
            victim = victim % (WORKERS - 1) + 1
            next_kill += kill_every
        if t >= next_client and client_kill_every is not None and server is not None:
            await asyncio.to_thread(server.drop_clients)
            next_client += client_kill_every


async def test_l1_sustained_load_with_the_dashboard_attached(
    fresh_server: FaultServer, tmp_path: Path, procs: list[WorkerProcess]
) -> None:
    """L1: no-op jobs at the target rate through 4 workers (concurrency 50, keep 1,000
    completed, events capped at 10,000) with a real ``corral dash`` attached: nothing lost or
    duplicated, one completion record per job, the stream within its cap; the dashboard
    refreshes (p99 < 250 ms) and shows a keypress's effect (p99 <= 200 ms) in time; after the
    plan's warm-up, worker and dashboard RSS and the server's memory stay flat and no
    allocation site of the dashboard grows monotonically."""
    pytest.importorskip("pyte")
    await _load("L1", fresh_server.url, tmp_path, procs)


async def test_l2_sustained_load_with_worker_and_client_kills(
    fresh_server: FaultServer, tmp_path: Path, procs: list[WorkerProcess]
) -> None:
    """L2: as L1, with a worker SIGKILLed every ``CORRAL_SOAK_KILL_EVERY`` s (and replaced)
    and every client connection killed every ``CORRAL_SOAK_CLIENT_KILL_EVERY`` s: nothing lost;
    a job finishes twice only if it was in flight at a kill; the L1 criteria but the rate."""
    pytest.importorskip("pyte")
    figures = await _load(
        "L2",
        fresh_server.url,
        tmp_path,
        procs,
        kill_every=env_number("CORRAL_SOAK_KILL_EVERY", 15),
        client_kill_every=env_number("CORRAL_SOAK_CLIENT_KILL_EVERY", 22),
        server=fresh_server,
    )
    assert figures["worker_kills"] >= 1
    # at most the jobs in flight: concurrency per killed worker
    assert figures["reran_after_kill"] <= figures["worker_kills"] * CONCURRENCY


async def test_l3_a_large_backlog_drained(
    fresh_server: FaultServer, tmp_path: Path, procs: list[WorkerProcess]
) -> None:
    """L3: ``CORRAL_SOAK_BACKLOG`` jobs added first, then drained by 4 workers with the real
    dashboard on screen (its keys open the queue and its wait list at every stage of the
    drain) and the monitor alone attached: worker memory is bounded by concurrency, not by
    the backlog (it does not grow while the backlog shrinks), and so is the dashboard's and
    the monitor's."""
    pytest.importorskip("pyte")
    backlog = int(env_number("CORRAL_SOAK_BACKLOG", 200_000))
    url, ledger, seen = fresh_server.url, tmp_path / "ledger.jsonl", tmp_path / "monitor.jsonl"
    added: list[str] = []
    async with (
        Queue(QUEUE, url, max_events=MAX_EVENTS) as queue,
        contextlib.AsyncExitStack() as attached,
    ):
        # on screen while the backlog builds up, so its own warm-up is over when it drains
        dash = await attached.enter_async_context(dashboard_process(url, tmp_path, 0.0))
        started = time.monotonic()
        for offset in range(0, backlog, 1000):
            jobs = await queue.add_bulk(
                [("noop", {}, KEEP) for _ in range(min(1000, backlog - offset))]
            )
            added.extend(job.id for job in jobs)
        add_s = time.monotonic() - started
        memory_full = int((await queue.client.info("memory"))["used_memory"]) / 2**20
        monitor = attached.enter_context(monitor_process(url, seen))
        workers = [_worker(url, ledger) for _ in range(WORKERS)]
        procs.extend(workers)

        def pids() -> dict[str, int]:
            out = {f"worker{i}-pid{w.proc.pid}": w.proc.pid for i, w in enumerate(workers)}
            return {**out, "monitor": monitor.pid, "dashboard": dash.pid}

        sampler = Sampler(queue, pids)
        sampling = asyncio.create_task(sampler.run())
        drain_start = time.monotonic()
        await wait_until(lambda: _drained(queue, backlog), within=3600, interval=0.5)
        drain_s = time.monotonic() - drain_start
        await sampler.sample()
        sampler.stop()
        await sampling
        for worker in workers:
            worker.signal(signal.SIGTERM)
        finished = {str(x["job_id"]) for x in read_ledger(ledger) if x["kind"] == "finish"}
        check = check_ledger(ledger, set(added), finished)
        totals = await queue.get_totals()
        memory_end = int((await queue.client.info("memory"))["used_memory"]) / 2**20
        await assert_invariants(queue.client, QUEUE)
    warmup = min(20.0, drain_s * 0.2)
    rss = {k: s.summary(warmup) for k, s in sampler.rss.items()}
    screen = screen_figures(dash.watch, (drain_start, drain_start + drain_s))
    if dash.status != 0:
        screen["errors"].append(f"watcher exit {dash.status}: {dash.errors.read_text()[-2000:]}")
    figures: dict[str, Any] = {
        "backlog": backlog,
        "add_rate": round(backlog / add_s, 1),
        "drain_s": round(drain_s, 1),
        "drain_rate": round(backlog / drain_s, 1),
        "redis_used_memory_mb_full": round(memory_full, 1),
        "redis_used_memory_mb_drained": round(memory_end, 1),
        "rss_mb": rss,
        "lost": len(check.lost),
        "duplicated": len(check.duplicated),
        "completed_records": totals[0],
        "monitor": {k: v for k, v in monitor_figures(seen).items() if k != "stalled"},
        "dashboard": screen,
        "worker_log_lines": _log_lines(tmp_path),
    }
    _report("L3", figures)
    assert check.lost == set() and check.duplicated == set() and check.unexpected == set()
    assert totals == (backlog, 0)
    assert not screen["errors"], figures
    for name, summary in rss.items():  # bounded: no growth while the backlog drains
        assert summary["max"] <= summary["at_warmup"] * 1.10 + 5, (name, figures)
