"""The dashboard's figures, measured on a real ``corral dash`` process in a pseudo-terminal.

- **load**: its CPU (% of one core) and peak resident memory while producer and worker processes
  run the engine at a target rate (the rate reached is reported beside them);
- **to screen**: at a low rate, the time from adding a job until the screen shows the new count;
- **big queue**: with 1,000,000 waiting jobs, the time the dashboard backend takes to discover,
  count and read pages (first, middle, last), and the time the real program takes to show the
  queue, open it and turn a page.

- **BullMQ load**: the same for ``corral dash --bullmq`` while Node BullMQ producer and worker
  processes (``peers/bullmq.js produce`` / ``work``) run a queue under the prefix ``bull``, and
  whether the dashboard's events tail kept up with BullMQ's events stream (which BullMQ trims at
  about 10,000 entries): gaps it detected, the share of entries it read, and its lag (through
  ``bench.dash_probe``, which runs the real command with a counter on the tail's reads).

Load and to-screen run twice: with keyspace notifications on (``LIVE``) and off (``POLLING``).
"""

from __future__ import annotations

import asyncio
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import redis.asyncio as aioredis

from bench import peers
from bench.child import WorkerChild
from bench.dash_probe import TailStats, parse_lines, tail_window
from bench.server import BenchServer
from bench.subjects import QUEUE, percentile
from bench.terminal import Predicate, PtyProgram
from dashboard.corral_backend import CorralBackend
from dashboard.event_tail import BATCH
from dashboard.screens.queue import PAGE_SIZE
from dashboard.widgets.format import compact
from engine import Queue
from engine.keys import QueueKeys

REPO_ROOT = Path(__file__).resolve().parent.parent
SCREEN_TIMEOUT = 60.0
RSS_SAMPLE_INTERVAL = 0.5
WARMUP_SECONDS = 2.0
CHANGE_GAP = (0.2, 0.5)
"""Seconds between two state changes in the to-screen scenario (uniform, seeded)."""
SEED_PROCESSES = 2
MODES = {"live": "KA", "polling": ""}
"""Dashboard mode -> the server's ``notify-keyspace-events`` (``corral demo`` uses ``KA``)."""


@dataclass(frozen=True, slots=True)
class DashSettings:
    """Sizes and durations of the dashboard scenarios."""

    rate: float = 5_000.0
    producers: int = 1
    workers: int = 2
    concurrency: int = 50
    seconds: float = 10.0
    changes: int = 40
    big_jobs: int = 1_000_000
    pages: int = 5
    columns: int = 80
    rows: int = 24


TARGETS = {
    "dash-cpu": "≤ 15",
    "dash-rss": "≤ 150",
    "dash-screen-p50": "≤ 250",
    "dash-screen-max": "≤ 250",
    "dash-big-open": "< 1,000",
    "dash-big-screen-start": "< 1,000",
    "dash-big-screen-open": "< 1,000",
    "dash-big-page": "< 100",
    "dash-big-screen-page": "< 100",
    "dash-bullmq-cpu": "≤ 15",
    "dash-bullmq-rss": "≤ 150",
    "dash-bullmq-gaps": "0",
    "dash-bullmq-dropped": "0",
}
"""Metric key prefix -> the target in the metric's unit (issue #6; BullMQ: issue #8)."""


def target_of(key: str) -> str:
    """The target shown beside a dashboard metric, or ``""``."""
    return next((goal for prefix, goal in TARGETS.items() if key.startswith(prefix)), "")


# -- reading the screen ------------------------------------------------------------------------


def queue_row(lines: list[str], queue: str) -> list[str] | None:
    """The overview's cells for ``queue`` (name, wait, active, ...), or None if not shown."""
    for line in lines:
        cells = line.split()
        if cells and cells[0] == queue:
            return cells
    return None


def shows_wait(queue: str, waiting: int) -> Predicate:
    """True once the overview shows ``waiting`` in the queue's wait column."""
    text = compact(waiting)

    def check(lines: list[str]) -> bool:
        row = queue_row(lines, queue)
        return row is not None and len(row) > 1 and row[1] == text

    return check


def shows_rows(first: int, total: int) -> Predicate:
    """True once the queue screen's page line shows rows from ``first`` of ``total``."""
    wanted = f"rows {first}-"
    of = f"of {total}"
    return lambda lines: any(wanted in line and of in line for line in lines)


def shows_queue(queue: str) -> Predicate:
    """True once the overview lists the queue."""
    return lambda lines: queue_row(lines, queue) is not None


async def start_dash(url: str, s: DashSettings, probe: Path | None = None) -> PtyProgram:
    """``corral dash --redis URL`` (every queue, as a user runs it) on an 80x24 terminal; with
    ``probe``, ``corral dash --bullmq --redis URL`` run by ``bench.dash_probe`` writing there."""
    if probe is None:
        argv = [sys.executable, "-m", "corral", "dash", "--redis", url]
    else:
        argv = [sys.executable, "-m", "bench.dash_probe", "--out", str(probe), "--"]
        argv += ["dash", "--bullmq", "--redis", url]
    return await PtyProgram.start(argv, cwd=REPO_ROOT, columns=s.columns, rows=s.rows)


# -- helpers -----------------------------------------------------------------------------------


async def _children(
    argvs: list[list[str]], env: Mapping[str, str] | None = None
) -> list[WorkerChild]:
    children: list[WorkerChild] = []
    try:
        for argv in argvs:
            children.append(await WorkerChild.spawn(argv, REPO_ROOT, env))
    except BaseException:
        await asyncio.gather(*(child.kill() for child in children))
        raise
    return children


async def _stop_all(children: list[WorkerChild]) -> None:
    try:
        await asyncio.gather(*(child.stop() for child in children))
    finally:
        await asyncio.gather(*(child.kill() for child in children))


async def _timed(call: Callable[[], Awaitable[object]]) -> float:
    start = time.perf_counter()
    await call()
    return (time.perf_counter() - start) * 1000


# -- the scenarios -----------------------------------------------------------------------------


async def measure_load(server: BenchServer, s: DashSettings, mode: str) -> dict[str, float]:
    """CPU and peak RSS of ``corral dash`` while the engine runs at ``s.rate`` (target)."""
    await server.admin.config_set("notify-keyspace-events", MODES[mode])
    python = sys.executable
    target = ["--url", server.url, "--queue", QUEUE]
    producers = [
        [python, "-m", "bench.dash_load", "produce", *target, "--rate", str(s.rate / s.producers)]
        for _ in range(s.producers)
    ]
    workers = [
        [python, "-m", "bench.corral_worker", *target, "--concurrency", str(s.concurrency)]
        for _ in range(s.workers)
    ]
    keys = QueueKeys(QUEUE)
    children = await _children(workers + producers)
    try:
        for child in children:
            await child.go()
        await _until_exists(server.admin, keys.meta)
        async with await start_dash(server.url, s) as dash:
            await dash.wait_for(shows_queue(QUEUE), SCREEN_TIMEOUT, f"queue {QUEUE}")
            await asyncio.sleep(WARMUP_SECONDS)
            dash.emulate = False  # the harness only drains the terminal while measuring
            completed_0, added_0 = await _progress(server.admin, keys)
            cpu_0, start = dash.cpu_seconds(), time.perf_counter()
            peak = dash.rss_bytes()
            while time.perf_counter() - start < s.seconds:
                await asyncio.sleep(RSS_SAMPLE_INTERVAL)
                peak = max(peak, dash.rss_bytes())
            cpu, elapsed = dash.cpu_seconds() - cpu_0, time.perf_counter() - start
            completed, added = await _progress(server.admin, keys)
            if dash.proc.returncode is not None:
                raise RuntimeError(f"corral dash exited with {dash.proc.returncode}")
    finally:
        await _stop_all(children)
        await server.admin.config_set("notify-keyspace-events", "")
    return {
        f"dash-cpu-{mode}": cpu / elapsed * 100,
        f"dash-rss-{mode}": peak / 1e6,
        f"dash-engine-done-{mode}": (completed - completed_0) / elapsed,
        f"dash-engine-added-{mode}": (added - added_0) / elapsed,
    }


async def _until_exists(client: aioredis.Redis, key: str) -> None:
    deadline = time.monotonic() + SCREEN_TIMEOUT
    while not await client.exists(key):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{key} was not created within {SCREEN_TIMEOUT}s")
        await asyncio.sleep(0.05)


async def _progress(client: aioredis.Redis, keys: QueueKeys) -> tuple[int, int]:
    """(jobs completed, jobs added) so far: the completed total and the id counter."""
    async with client.pipeline(transaction=False) as pipe:
        pipe.hget(keys.counters, "completed")
        pipe.get(keys.id)
        completed, added = await pipe.execute()
    return int(completed or 0), int(added or 0)


# -- BullMQ under load ---------------------------------------------------------------------

BULL_PREFIX = "bull"
BULL_UNFINISHED = ("wait", "active", "paused", "prioritized", "delayed", "waiting-children")
"""States of a BullMQ job not finished yet: LLEN for the lists, ZCARD for the sorted sets."""
BULL_LISTS = frozenset({"wait", "active", "paused"})


@dataclass(frozen=True, slots=True)
class BullProgress:
    """A BullMQ queue's totals at one moment: jobs added (its id counter), jobs not finished,
    and the entries ever added to its events stream."""

    added: int
    unfinished: int
    stream_added: int

    @property
    def finished(self) -> int:
        """Jobs finished (removed on completion, so no longer anywhere) since the queue began."""
        return self.added - self.unfinished


async def bull_progress(client: aioredis.Redis, queue: str) -> BullProgress:
    """One pipeline: ``<prefix>:<queue>:id``, the unfinished states, ``XINFO STREAM`` events."""
    base = f"{BULL_PREFIX}:{queue}"
    async with client.pipeline(transaction=False) as pipe:
        pipe.get(f"{base}:id")
        for state in BULL_UNFINISHED:
            if state in BULL_LISTS:
                pipe.llen(f"{base}:{state}")
            else:
                pipe.zcard(f"{base}:{state}")
        pipe.xinfo_stream(f"{base}:events")
        added, *sizes, info = await pipe.execute()
    return BullProgress(int(added or 0), sum(int(n) for n in sizes), int(info["entries-added"]))


def bull_figures(
    mode: str,
    before: BullProgress,
    after: BullProgress,
    elapsed: float,
    cpu_seconds: float,
    peak_rss: int,
    tail: TailStats,
    dropped: int,
) -> dict[str, float]:
    """The BullMQ load rows of one run, from what was read at both ends of the window;
    ``dropped`` is how many connections the server closed for their output buffer meanwhile."""
    written = (after.stream_added - before.stream_added) / elapsed
    return {
        f"dash-bullmq-cpu-{mode}": cpu_seconds / elapsed * 100,
        f"dash-bullmq-rss-{mode}": peak_rss / 1e6,
        f"dash-bullmq-done-{mode}": (after.finished - before.finished) / elapsed,
        f"dash-bullmq-added-{mode}": (after.added - before.added) / elapsed,
        f"dash-bullmq-stream-{mode}": written,
        f"dash-bullmq-read-{mode}": tail.read_per_s / written * 100 if written else 0.0,
        f"dash-bullmq-lag-{mode}": tail.lag_max_ms,
        f"dash-bullmq-gaps-{mode}": float(tail.gaps_total),
        f"dash-bullmq-full-{mode}": float(tail.full_window),
        f"dash-bullmq-dropped-{mode}": float(dropped),
    }


def bull_load_argvs(url: str, s: DashSettings) -> list[list[str]]:
    """The Node worker processes (first) and producer processes of the BullMQ load."""
    node = ["node", str(peers.SCRIPT)]
    target = ["--url", url, "--queue", QUEUE]
    workers = [
        [*node, "work", *target, "--concurrency", str(s.concurrency)] for _ in range(s.workers)
    ]
    producers = [
        [*node, "produce", *target, "--rate", str(s.rate / s.producers)] for _ in range(s.producers)
    ]
    return workers + producers


async def measure_bullmq_load(server: BenchServer, s: DashSettings, mode: str) -> dict[str, float]:
    """CPU and peak RSS of ``corral dash --bullmq`` while Node BullMQ runs at ``s.rate`` (target),
    and how its events tail kept up. Node BullMQ must be installed (``peers.ensure_node_peer``)."""
    await server.admin.config_set("notify-keyspace-events", MODES[mode])
    env = {"NODE_PATH": str(peers.NODE_DIR / "node_modules")}
    children = await _children(bull_load_argvs(server.url, s), env)
    try:
        for child in children:
            await child.go()
        await _until_exists(server.admin, f"{BULL_PREFIX}:{QUEUE}:events")
        dropped_0 = await _output_buffer_drops(server.admin)
        with tempfile.TemporaryDirectory(prefix="corral-dash-probe-") as folder:
            probe = Path(folder) / "tail.jsonl"
            async with await start_dash(server.url, s, probe) as dash:
                await dash.wait_for(shows_queue(QUEUE), SCREEN_TIMEOUT, f"queue {QUEUE}")
                await asyncio.sleep(WARMUP_SECONDS)
                dash.emulate = False  # the harness only drains the terminal while measuring
                before = await bull_progress(server.admin, QUEUE)
                cpu_0, start, window_0 = dash.cpu_seconds(), time.perf_counter(), time.monotonic()
                peak = dash.rss_bytes()
                while time.perf_counter() - start < s.seconds:
                    await asyncio.sleep(RSS_SAMPLE_INTERVAL)
                    peak = max(peak, dash.rss_bytes())
                cpu, elapsed = dash.cpu_seconds() - cpu_0, time.perf_counter() - start
                window_1 = time.monotonic()
                after = await bull_progress(server.admin, QUEUE)
                dropped = await _output_buffer_drops(server.admin) - dropped_0
                if dash.proc.returncode is not None:
                    raise RuntimeError(f"corral dash exited with {dash.proc.returncode}")
            tail = tail_window(parse_lines(probe.read_text(encoding="utf-8")), window_0, window_1)
    finally:
        await _stop_all(children)
        await server.admin.config_set("notify-keyspace-events", "")
    return bull_figures(mode, before, after, elapsed, cpu, peak, tail, dropped)


async def _output_buffer_drops(client: aioredis.Redis) -> int:
    """Connections the server has closed for exceeding their output buffer limit: in live mode,
    the dashboard's pub/sub connection when notifications come faster than it reads them (no
    other client of the load subscribes to anything)."""
    stats = await client.info("stats")
    return int(stats.get("client_output_buffer_limit_disconnections", 0))


def bull_rows(d: DashSettings, modes: Sequence[str]) -> list[tuple[str, str, str]]:
    """(key, title, unit) of the BullMQ load rows, per mode."""
    rows: list[tuple[str, str, str]] = []
    for mode in modes:
        during = f"{mode}, Node BullMQ target {d.rate:,.0f} jobs/s"
        rows += [
            (f"dash-bullmq-cpu-{mode}", f"`corral dash --bullmq` CPU, {during}", "% of a core"),
            (f"dash-bullmq-rss-{mode}", f"`corral dash --bullmq` peak RSS, {during}", "MB"),
            (f"dash-bullmq-done-{mode}", f"BullMQ: jobs completed meanwhile ({mode})", "jobs/s"),
            (f"dash-bullmq-added-{mode}", f"BullMQ: jobs added meanwhile ({mode})", "jobs/s"),
            (
                f"dash-bullmq-stream-{mode}",
                f"BullMQ: events stream entries written ({mode})",
                "entries/s",
            ),
            (
                f"dash-bullmq-read-{mode}",
                f"events tail: entries read, share of written ({mode})",
                "%",
            ),
            (f"dash-bullmq-lag-{mode}", f"events tail: max age of newest read ({mode})", "ms"),
            (f"dash-bullmq-gaps-{mode}", f"events tail: gaps detected, whole run ({mode})", "gaps"),
            (
                f"dash-bullmq-full-{mode}",
                f"events tail: rounds at its read size of {BATCH:,} ({mode})",
                "rounds",
            ),
            (
                f"dash-bullmq-dropped-{mode}",
                f"server: connections dropped, output buffer full ({mode})",
                "drops",
            ),
        ]
    return rows


async def measure_to_screen(server: BenchServer, s: DashSettings, mode: str) -> dict[str, float]:
    """Add a job every 0.2-0.5 s; each time, how long until the overview shows the new count."""
    await server.admin.config_set("notify-keyspace-events", MODES[mode])
    rng = random.Random(6)
    delays: list[float] = []
    try:
        async with Queue(QUEUE, server.url) as queue:
            await queue.add("noop", {})
            async with await start_dash(server.url, s) as dash:
                await dash.wait_for(shows_wait(QUEUE, 1), SCREEN_TIMEOUT, "the first job")
                for waiting in range(2, s.changes + 2):
                    await asyncio.sleep(rng.uniform(*CHANGE_GAP))
                    changed = time.perf_counter()
                    await queue.add("noop", {})
                    shown = await dash.wait_for(
                        shows_wait(QUEUE, waiting), SCREEN_TIMEOUT, f"{waiting} waiting"
                    )
                    delays.append((shown - changed) * 1000)
    finally:
        await server.admin.config_set("notify-keyspace-events", "")
    delays.sort()
    return {
        f"dash-screen-p50-{mode}": percentile(delays, 0.5),
        f"dash-screen-max-{mode}": delays[-1],
    }


async def seed_big(server: BenchServer, jobs: int) -> float:
    """Add ``jobs`` waiting jobs from ``SEED_PROCESSES`` processes; return the seconds taken."""
    start = time.perf_counter()
    shares = [jobs // SEED_PROCESSES + (i < jobs % SEED_PROCESSES) for i in range(SEED_PROCESSES)]
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench.dash_load", "seed", "--url", server.url,
            "--queue", QUEUE, "--jobs", str(share),
            cwd=REPO_ROOT,
            stdout=asyncio.subprocess.DEVNULL,
        )
        for share in shares
    ]  # fmt: skip
    codes = await asyncio.gather(*(proc.wait() for proc in procs))
    if any(codes):
        raise RuntimeError(f"seeding failed: exit statuses {codes}")
    return time.perf_counter() - start


async def measure_big(server: BenchServer, s: DashSettings, runs: int) -> dict[str, list[float]]:
    """With ``s.big_jobs`` waiting: backend reads timed ``runs`` times each, then the real
    program: start until the queue shows, open it, turn ``s.pages`` pages."""
    print(f"  seeding {s.big_jobs:,} jobs...", file=sys.stderr, flush=True)
    seconds = await seed_big(server, s.big_jobs)
    print(f"  seeded in {seconds:.0f}s", file=sys.stderr, flush=True)
    out: dict[str, list[float]] = {}
    backend = CorralBackend()
    client = aioredis.Redis.from_url(server.url, decode_responses=True)
    last = (s.big_jobs - 1) // PAGE_SIZE * PAGE_SIZE
    pages = {"first": 0, "middle": last // 2 // PAGE_SIZE * PAGE_SIZE, "last": last}
    try:
        for _ in range(runs):
            for key, ms in (await _backend_times(backend, client, pages)).items():
                out.setdefault(key, []).append(ms)
    finally:
        await client.aclose()
    out.update(await _screen_times(server, s))
    return out


async def _backend_times(
    backend: CorralBackend, client: aioredis.Redis, pages: Mapping[str, int]
) -> dict[str, float]:
    """One round of the reads the dashboard does to show and open the queue, in ms."""
    out = {
        "dash-big-discover": await _timed(lambda: backend.discover_queues(client)),
        "dash-big-found": await _timed(lambda: _sampled(backend, client)),
        "dash-big-counts": await _timed(lambda: backend.read_counts(client, [QUEUE])),
    }
    for name, start in pages.items():
        out[f"dash-big-page-{name}"] = await _timed(_page_reader(backend, client, start))
    out["dash-big-open"] = out["dash-big-counts"] + out["dash-big-page-first"]
    return out


async def _sampled(backend: CorralBackend, client: aioredis.Redis) -> None:
    """What the monitor reads before its first count: the queues of a few random keys."""
    found = await backend.sample_queues(client)
    if QUEUE not in found:
        raise RuntimeError(f"sampling {found} missed {QUEUE!r}, which holds nearly every key")


def _page_reader(
    backend: CorralBackend, client: aioredis.Redis, start: int
) -> Callable[[], Awaitable[object]]:
    return lambda: backend.read_page(client, QUEUE, "wait", start, PAGE_SIZE)


BIG_DISCOVERY_ROWS = (
    ("dash-big-found", "backend: find the queue before any SCAN (random keys)", "ms"),
    ("dash-big-screen-start-queue", "screen: `corral dash --queue` started → queue shown", "ms"),
)
"""(key, title, unit) of the big-queue rows about discovery, listed by
``scenarios.dash_metrics`` after the others."""


async def _screen_times(server: BenchServer, s: DashSettings) -> dict[str, list[float]]:
    """The real program on the big queue: start, open, pages; times in ms, RSS in MB. Then
    started again on that queue alone (``--queue``: no discovery at all) until it shows."""
    started = time.perf_counter()
    async with await start_dash(server.url, s) as dash:
        shown = await dash.wait_for(shows_wait(QUEUE, s.big_jobs), SCREEN_TIMEOUT, "the queue")
        first_shown = (shown - started) * 1000
        await asyncio.sleep(1.0)  # let the first snapshot settle before typing
        pressed = time.perf_counter()
        dash.send("\r")
        opened = await dash.wait_for(shows_rows(1, s.big_jobs), SCREEN_TIMEOUT, "the first page")
        page_times = []
        for page in range(1, s.pages + 1):
            await asyncio.sleep(0.3)
            turned = time.perf_counter()
            dash.send("n")
            done = await dash.wait_for(
                shows_rows(page * PAGE_SIZE + 1, s.big_jobs), SCREEN_TIMEOUT, f"page {page + 1}"
            )
            page_times.append((done - turned) * 1000)
        rss = dash.rss_bytes() / 1e6
    started = time.perf_counter()
    named = [sys.executable, "-m", "corral", "dash", "--redis", server.url, "--queue", QUEUE]
    async with await PtyProgram.start(named, cwd=REPO_ROOT, columns=s.columns, rows=s.rows) as dash:
        shown = await dash.wait_for(shows_wait(QUEUE, s.big_jobs), SCREEN_TIMEOUT, "the queue")
    return {
        "dash-big-screen-start": [first_shown],
        "dash-big-screen-start-queue": [(shown - started) * 1000],
        "dash-big-screen-open": [(opened - pressed) * 1000],
        "dash-big-screen-page": [statistics.median(page_times)],
        "dash-big-rss": [rss],
    }
