"""Soak runs L1-L3 (opt-in: ``python -m pytest -m soak tests/soak -s``): sustained load with
the dashboard's monitor attached, the same with workers SIGKILLed and clients killed, and a
large backlog drained. Each prints its figures as one JSON line (and appends it to
``$CORRAL_SOAK_REPORT`` if set).

Durations and sizes come from the environment, so the full runs need no code change:
``CORRAL_SOAK_SECONDS`` (default 60; the plan's full run is 600), ``CORRAL_SOAK_RATE`` (jobs/s,
default 2000), ``CORRAL_SOAK_KILL_EVERY`` (s between worker kills in L2, default 15; plan: 60),
``CORRAL_SOAK_CLIENT_KILL_EVERY`` (default 22; plan: 90), ``CORRAL_SOAK_BACKLOG`` (L3 jobs,
default 200,000; plan: 1,000,000).
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
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.invariants import assert_invariants
from support.ledger import check_ledger, read_ledger
from support.server import FaultServer
from support.soak import Sampler, env_number, monitor_figures, produce
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
    url: str,
    tmp_path: Path,
    procs: list[WorkerProcess],
    *,
    kill_every: float | None = None,
    client_kill_every: float | None = None,
    server: FaultServer | None = None,
) -> dict[str, Any]:
    """Run the sustained load (L1, or L2 with kills); return the figures."""
    seconds = env_number("CORRAL_SOAK_SECONDS", 60)
    rate = env_number("CORRAL_SOAK_RATE", 2000)
    warmup = max(min(120.0, seconds * 0.2), 10.0)
    ledger, seen = tmp_path / "ledger.jsonl", tmp_path / "monitor.jsonl"
    workers = [_worker(url, ledger) for _ in range(WORKERS)]
    procs.extend(workers)
    killed: list[int] = []
    added: list[str] = []
    async with Queue(QUEUE, url, max_events=MAX_EVENTS) as queue:
        with monitor_process(url, seen) as monitor:

            def pids() -> dict[str, int]:
                out = {f"worker{i}-pid{w.proc.pid}": w.proc.pid for i, w in enumerate(workers)}
                return {**out, "monitor": monitor.pid}

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
            started = time.monotonic()
            await produce(queue, rate, seconds, added, KEEP)
            elapsed = time.monotonic() - started
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
        "rss_mb": {k: s.summary(warmup) for k, s in sampler.rss.items()},
        "redis_used_memory_mb": sampler.used_memory.summary(warmup),
        "xlen_max": max((v for _, v in sampler.xlen.points), default=0),
        "monitor": {k: v for k, v in monitor_figures(seen).items() if k != "stalled"},
        "stalled_events_seen_by_monitor": len(monitor_figures(seen)["stalled"]),
        "worker_log_lines": _log_lines(tmp_path),
    }
    assert check.lost == set() and check.unexpected == set(), figures
    assert check.duplicated == set(), figures
    assert totals == (len(added), 0), figures  # one completion record per job, no failure
    assert figures["xlen_max"] <= MAX_EVENTS + EVENTS_SLACK, figures
    return figures


def _in_flight_at_kills(ledger: Path, killed: list[int]) -> list[str]:
    """Jobs a SIGKILLed worker had started and that another process started again: the jobs
    in flight at a kill, which the stalled check recovers (each may finish twice)."""
    lines = read_ledger(ledger)
    victims = set(killed)
    by_victim = {str(x["job_id"]) for x in lines if x["kind"] == "start" and x["pid"] in victims}
    again = {str(x["job_id"]) for x in lines if x["kind"] == "start" and x["pid"] not in victims}
    return sorted(by_victim & again)


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


async def test_l1_sustained_load_with_the_monitor_attached(
    fresh_server: FaultServer, tmp_path: Path, procs: list[WorkerProcess]
) -> None:
    """L1: no-op jobs at the target rate through 4 workers (concurrency 50, keep 1,000
    completed, events capped at 10,000) with the dashboard's monitor attached: nothing lost or
    duplicated, one completion record per job, the stream within its cap; memory figures are
    reported."""
    figures = await _load(fresh_server.url, tmp_path, procs)
    _report("L1", figures)


async def test_l2_sustained_load_with_worker_and_client_kills(
    fresh_server: FaultServer, tmp_path: Path, procs: list[WorkerProcess]
) -> None:
    """L2: as L1, with a worker SIGKILLed every ``CORRAL_SOAK_KILL_EVERY`` s (and replaced)
    and every client connection killed every ``CORRAL_SOAK_CLIENT_KILL_EVERY`` s: nothing lost;
    a job finishes twice only if it was in flight at a kill."""
    figures = await _load(
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
    _report("L2", figures)


async def test_l3_a_large_backlog_drained(
    fresh_server: FaultServer, tmp_path: Path, procs: list[WorkerProcess]
) -> None:
    """L3: ``CORRAL_SOAK_BACKLOG`` jobs added first, then drained by 4 workers with the monitor
    attached: worker memory is bounded by concurrency, not by the backlog (it does not grow
    while the backlog shrinks), and so is the monitor's."""
    backlog = int(env_number("CORRAL_SOAK_BACKLOG", 200_000))
    url, ledger, seen = fresh_server.url, tmp_path / "ledger.jsonl", tmp_path / "monitor.jsonl"
    added: list[str] = []
    async with Queue(QUEUE, url, max_events=MAX_EVENTS) as queue:
        started = time.monotonic()
        for offset in range(0, backlog, 1000):
            jobs = await queue.add_bulk(
                [("noop", {}, KEEP) for _ in range(min(1000, backlog - offset))]
            )
            added.extend(job.id for job in jobs)
        add_s = time.monotonic() - started
        memory_full = int((await queue.client.info("memory"))["used_memory"]) / 2**20
        with monitor_process(url, seen) as monitor:
            workers = [_worker(url, ledger) for _ in range(WORKERS)]
            procs.extend(workers)

            def pids() -> dict[str, int]:
                out = {f"worker{i}-pid{w.proc.pid}": w.proc.pid for i, w in enumerate(workers)}
                return {**out, "monitor": monitor.pid}

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
        "worker_log_lines": _log_lines(tmp_path),
    }
    _report("L3", figures)
    assert check.lost == set() and check.duplicated == set() and check.unexpected == set()
    assert totals == (backlog, 0)
    for name, summary in rss.items():  # bounded: no growth while the backlog drains
        assert summary["max"] <= summary["at_warmup"] * 1.10 + 5, (name, figures)
