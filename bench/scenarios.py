"""The scenarios: what is measured, how, and under which metric names.

Every measurement starts from an empty server. Processing runs seed the jobs first (untimed),
start the worker process, and time from ``go`` until a separate client, polling every 50 ms,
sees every job finished; worker CPU comes from the worker process, server CPU from ``INFO cpu``.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from bench import dashboard
from bench.child import WorkerChild
from bench.dashboard import DashSettings
from bench.server import BenchServer
from bench.subjects import Subject

POLL_INTERVAL = 0.05

Samples = dict[str, dict[str, list[float]]]
"""metric key -> subject label -> one value per run."""


@dataclass(frozen=True, slots=True)
class Settings:
    """Sizes and durations of one harness run."""

    jobs: int = 20_000
    chunk: int = 1_000
    runs: int = 3
    concurrencies: tuple[int, ...] = (1, 50)
    latency_rate: float = 500.0
    latency_seconds: float = 5.0
    latency_concurrency: int = 50
    ceiling_tasks: int = 50
    ceiling_pipeline: int = 16
    ceiling_seconds: float = 3.0
    process_timeout: float = 600.0
    dash: DashSettings = field(default_factory=DashSettings)


@dataclass(frozen=True, slots=True)
class Metric:
    """One row of a result table."""

    key: str
    title: str
    unit: str
    higher_is_better: bool = True
    table: str = "main"


def _process_key(concurrency: int, remove: bool) -> str:
    return f"process-c{concurrency}-{'remove' if remove else 'keep'}"


def metrics(settings: Settings) -> list[Metric]:
    """Every metric the scenarios report, in table order."""
    out = [
        Metric("add", "add one by one", "jobs/s"),
        Metric("bulk", f"add bulk (chunks of {settings.chunk:,})", "jobs/s"),
    ]
    for concurrency in settings.concurrencies:
        for remove in (False, True):
            retention = "remove on complete" if remove else "keep completed"
            key = _process_key(concurrency, remove)
            out.append(Metric(key, f"process c={concurrency}, {retention}", "jobs/s"))
            title = f"c={concurrency}, {retention}"
            out.append(Metric(f"{key}:worker", f"worker CPU, {title}", "µs/job", False, "cpu"))
            out.append(Metric(f"{key}:server", f"server CPU, {title}", "µs/job", False, "cpu"))
    tasks, depth = settings.ceiling_tasks, settings.ceiling_pipeline
    rate = f"@{settings.latency_rate:g}/s, c={settings.latency_concurrency}"
    out += [
        Metric("latency-p50", f"add→start p50 {rate}", "ms", False),
        Metric("latency-p99", f"add→start p99 {rate}", "ms", False),
        Metric("ceiling", f"trivial EVALSHA, {tasks} tasks", "calls/s"),
        Metric(
            "ceiling-pipelined",
            f"trivial EVALSHA, {tasks} tasks, pipelined x{depth}",
            "calls/s",
        ),
    ]
    return out + dash_metrics(settings.dash)


def dash_metrics(d: DashSettings) -> list[Metric]:
    """The dashboard's rows (Corral's dashboard, on Corral and on Node BullMQ queues)."""
    rows: list[tuple[str, str, str]] = []  # key, title, unit
    for mode in dashboard.MODES:
        during = f"{mode}, engine target {d.rate:,.0f} jobs/s"
        rows += [
            (f"dash-cpu-{mode}", f"`corral dash` CPU, {during}", "% of a core"),
            (f"dash-rss-{mode}", f"`corral dash` peak RSS, {during}", "MB"),
            (f"dash-engine-done-{mode}", f"engine: jobs completed meanwhile ({mode})", "jobs/s"),
            (f"dash-engine-added-{mode}", f"engine: jobs added meanwhile ({mode})", "jobs/s"),
        ]
    rows += dashboard.bull_rows(d, list(dashboard.MODES))
    for mode in dashboard.MODES:
        rows += [
            (f"dash-screen-p50-{mode}", f"job added → count on screen, p50 ({mode})", "ms"),
            (
                f"dash-screen-max-{mode}",
                f"job added → count on screen, max of {d.changes} ({mode})",
                "ms",
            ),
        ]
    big = f"{d.big_jobs:,} waiting"
    rows += [
        ("dash-big-discover", f"backend: find the queues (SCAN), {big}", "ms"),
        ("dash-big-counts", f"backend: counts of the queue, {big}", "ms"),
        ("dash-big-open", "backend: open the queue (counts + first page)", "ms"),
        ("dash-big-page-first", "backend: first page", "ms"),
        ("dash-big-page-middle", "backend: middle page", "ms"),
        ("dash-big-page-last", "backend: last page", "ms"),
        ("dash-big-screen-start", "screen: `corral dash` started → queue shown", "ms"),
        ("dash-big-screen-open", "screen: Enter → first page shown", "ms"),
        ("dash-big-screen-page", f"screen: `n` → next page shown (median of {d.pages})", "ms"),
        ("dash-big-rss", "`corral dash` RSS with the queue open", "MB"),
    ]
    rows += list(dashboard.BIG_DISCOVERY_ROWS)
    return [
        Metric(key, title, unit, higher_is_better=unit == "jobs/s", table="dash")
        for key, title, unit in rows
    ]


Values = dict[str, float] | dict[str, list[float]]
"""What one measurement returns: one value per metric, or several (a scenario run once that
repeats its own measurements)."""
Measure = Callable[[Subject, BenchServer, Settings], Awaitable[Values]]


async def measure_add(subject: Subject, server: BenchServer, s: Settings) -> dict[str, float]:
    """Jobs added per second, one awaited call at a time."""
    return {"add": s.jobs / await subject.add_one_by_one(s.jobs)}


async def measure_bulk(subject: Subject, server: BenchServer, s: Settings) -> dict[str, float]:
    """Jobs added per second in bulk calls."""
    return {"bulk": s.jobs / await subject.add_bulk(s.jobs, s.chunk)}


async def _process(
    subject: Subject, server: BenchServer, s: Settings, concurrency: int, remove: bool
) -> dict[str, float]:
    key = _process_key(concurrency, remove)
    jobs = subject.limits.jobs_for(key, s.jobs)
    await subject.seed(jobs, remove)
    spec = subject.worker(concurrency)
    child = await WorkerChild.spawn(spec.argv, spec.cwd, spec.env)
    try:
        server_cpu = await server.cpu_seconds()
        start = time.perf_counter()
        await child.go()
        while await subject.remaining(jobs) > 0:
            if time.perf_counter() - start > s.process_timeout:
                raise TimeoutError(f"{subject.label}: not done after {s.process_timeout}s")
            await asyncio.sleep(POLL_INTERVAL)
        elapsed = time.perf_counter() - start
        server_cpu = await server.cpu_seconds() - server_cpu
        worker_cpu = await child.stop()
    finally:
        await child.kill()
    return {
        key: jobs / elapsed,
        f"{key}:worker": worker_cpu / jobs * 1e6,
        f"{key}:server": server_cpu / jobs * 1e6,
    }


def measure_process(concurrency: int, remove: bool) -> Measure:
    """Jobs processed per second by one worker process at ``concurrency``."""

    async def measure(subject: Subject, server: BenchServer, s: Settings) -> dict[str, float]:
        return await _process(subject, server, s, concurrency, remove)

    return measure


async def measure_latency(subject: Subject, server: BenchServer, s: Settings) -> dict[str, float]:
    """Add-to-start delay percentiles at a steady add rate, one worker process running."""
    spec = subject.worker(s.latency_concurrency)
    child = await WorkerChild.spawn(spec.argv, spec.cwd, spec.env)
    try:
        await child.go()
        result = await subject.latency(s.latency_rate, s.latency_seconds)
        await child.stop()
    finally:
        await child.kill()
    if result.achieved_rate < 0.95 * s.latency_rate:
        print(
            f"  note: {subject.label} added at only {result.achieved_rate:.0f}/s",
            file=sys.stderr,
        )
    return {"latency-p50": result.p50_ms, "latency-p99": result.p99_ms}


async def measure_ceiling(subject: Subject, server: BenchServer, s: Settings) -> dict[str, float]:
    """Trivial script calls per second: plain, then pipelined."""
    plain = await subject.ceiling(s.ceiling_tasks, 1, s.ceiling_seconds)
    await server.flush()
    piped = await subject.ceiling(s.ceiling_tasks, s.ceiling_pipeline, s.ceiling_seconds)
    return {"ceiling": plain, "ceiling-pipelined": piped}


def measure_dash_load(mode: str) -> Measure:
    """``corral dash`` CPU and RSS under engine load, in ``mode``."""

    async def measure(subject: Subject, server: BenchServer, s: Settings) -> Values:
        return await dashboard.measure_load(server, s.dash, mode)

    return measure


def measure_dash_bullmq(mode: str) -> Measure:
    """``corral dash --bullmq`` CPU, RSS and events tail under Node BullMQ load, in ``mode``."""

    async def measure(subject: Subject, server: BenchServer, s: Settings) -> Values:
        return await dashboard.measure_bullmq_load(server, s.dash, mode)

    return measure


def measure_dash_screen(mode: str) -> Measure:
    """State change to screen at a low rate, in ``mode``."""

    async def measure(subject: Subject, server: BenchServer, s: Settings) -> Values:
        return await dashboard.measure_to_screen(server, s.dash, mode)

    return measure


async def measure_dash_big(subject: Subject, server: BenchServer, s: Settings) -> Values:
    """The big queue, seeded once; its reads repeated ``s.runs`` times."""
    return await dashboard.measure_big(server, s.dash, s.runs)


@dataclass(frozen=True, slots=True)
class Scenario:
    """A named measurement; ``corral_only`` ones skip the peers, ``once`` ones run in the
    first repetition only (they repeat inside)."""

    name: str
    measure: Measure
    corral_only: bool = False
    once: bool = False


def scenarios(settings: Settings) -> list[Scenario]:
    """The scenarios in the order they run within one repetition."""
    out = [Scenario("add", measure_add), Scenario("bulk", measure_bulk)]
    for concurrency in settings.concurrencies:
        for remove in (False, True):
            name = _process_key(concurrency, remove)
            out.append(Scenario(name, measure_process(concurrency, remove)))
    out += [Scenario("latency", measure_latency), Scenario("ceiling", measure_ceiling)]
    for mode in dashboard.MODES:
        out.append(Scenario(f"dash-load-{mode}", measure_dash_load(mode), corral_only=True))
    for mode in dashboard.MODES:
        out.append(Scenario(f"dash-bullmq-{mode}", measure_dash_bullmq(mode), corral_only=True))
    for mode in dashboard.MODES:
        out.append(Scenario(f"dash-screen-{mode}", measure_dash_screen(mode), corral_only=True))
    out.append(Scenario("dash-big", measure_dash_big, corral_only=True, once=True))
    return out


def selected_scenarios(settings: Settings, selected: Sequence[str] | None) -> list[str]:
    """Names of the scenarios ``--only`` (``selected`` prefixes) keeps."""
    names = [scenario.name for scenario in scenarios(settings)]
    return [n for n in names if not selected or any(n.startswith(p) for p in selected)]


@dataclass
class Results:
    """Every value measured, and the runs that failed (subject label -> messages)."""

    samples: Samples = field(default_factory=dict)
    failures: dict[str, list[str]] = field(default_factory=dict)


async def run_all(
    subjects: Sequence[Subject],
    server: BenchServer,
    settings: Settings,
    selected: Sequence[str] | None = None,
) -> Results:
    """Run every (selected) scenario ``settings.runs`` times, interleaving subjects so drift
    hits them alike. A subject's failed run is reported and recorded; the others go on."""
    results = Results()
    for run in range(1, settings.runs + 1):
        tag = f"[run {run}/{settings.runs}]"
        for scenario in scenarios(settings):
            name = scenario.name
            if selected and not any(name.startswith(prefix) for prefix in selected):
                continue
            if scenario.once and run > 1:
                continue
            for subject in subjects[:1] if scenario.corral_only else subjects:
                why_not = subject.limits.why_not(name)
                if why_not is not None:
                    if run == 1:
                        print(
                            f"{tag} {subject.label:<16} {name}: not run, {why_not}", file=sys.stderr
                        )
                    continue
                await server.flush()
                began = time.perf_counter()
                try:
                    values = await scenario.measure(subject, server, settings)
                except Exception as exc:  # one peer's failure must not lose the other figures
                    message = f"{name}: {type(exc).__name__}: {str(exc).strip()[-800:]}"
                    results.failures.setdefault(subject.label, []).append(message)
                    print(f"{tag} {subject.label:<16} FAILED {message}", file=sys.stderr)
                    continue
                for key, value in values.items():
                    recorded = results.samples.setdefault(key, {}).setdefault(subject.label, [])
                    recorded.extend(value if isinstance(value, list) else [value])
                shown = ", ".join(
                    f"{k}={statistics.median(v) if isinstance(v, list) else v:,.1f}"
                    for k, v in values.items()
                    if ":" not in k
                )
                took = time.perf_counter() - began
                print(
                    f"{tag} {subject.label:<16} {shown} ({took:.1f}s)",
                    file=sys.stderr,
                    flush=True,
                )
    return results
