"""Medians and spreads of the samples, the result tables, and ``docs/performance.md``."""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.dashboard import target_of
from bench.scenarios import Metric, Results, Samples
from bench.subjects import Limits

BEGIN = "<!-- bench:results:begin -->"
END = "<!-- bench:results:end -->"
MISSING = "—"
NOT_RUN = "n/a"


@dataclass(frozen=True, slots=True)
class Summary:
    """The median of a metric's runs and their range."""

    median: float
    low: float
    high: float
    runs: int

    @classmethod
    def of(cls, values: Sequence[float]) -> Summary:
        """Summarize one subject's values for one metric."""
        return cls(statistics.median(values), min(values), max(values), len(values))


def _number(value: float, unit: str) -> str:
    if unit == "ms" and value < 10:
        return f"{value:.2f}"
    if unit == "ms" and value < 1000:
        return f"{value:.1f}"
    return f"{value:,.0f}"


def _cell(summary: Summary | None, unit: str) -> str:
    if summary is None:
        return MISSING
    text = _number(summary.median, unit)
    if summary.runs > 1:
        text += f" ({_number(summary.low, unit)}-{_number(summary.high, unit)})"
    return text


def _summary(samples: Samples, key: str, label: str) -> Summary | None:
    values = samples.get(key, {}).get(label)
    return Summary.of(values) if values else None


def _shown(metrics: Sequence[Metric], samples: Samples, kind: str) -> list[Metric]:
    """The ``kind`` metrics that have samples."""
    return [metric for metric in metrics if metric.table == kind and metric.key in samples]


def has_rows(metrics: Sequence[Metric], samples: Samples, kind: str) -> bool:
    """Whether a ``kind`` table would have any row."""
    return bool(_shown(metrics, samples, kind))


def table(
    metrics: Sequence[Metric], samples: Samples, limits: Mapping[str, Limits], kind: str
) -> str:
    """A Markdown table of ``kind`` metrics: median (min-max) per subject (``limits`` maps each
    subject's label to its limits, in column order); ``n/a`` where the subject does not run it."""
    labels = list(limits)
    head = ["scenario", "unit", *labels]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for metric in _shown(metrics, samples, kind):
        row = [metric.title, metric.unit]
        for label in labels:
            summary = _summary(samples, metric.key, label)
            unsupported = limits[label].why_not(metric.key) is not None
            row.append(NOT_RUN if summary is None and unsupported else _cell(summary, metric.unit))
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def ratio_table(metrics: Sequence[Metric], samples: Samples, limits: Mapping[str, Limits]) -> str:
    """The first subject's median over each other subject's, per main metric (above 1 is
    better for rates, below 1 for latency)."""
    base, *peers = list(limits)
    head = ["scenario", *(f"{base} / {peer}" for peer in peers)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for metric in _shown(metrics, samples, "main"):
        first = _summary(samples, metric.key, base)
        row = [metric.title]
        for peer in peers:
            other = _summary(samples, metric.key, peer)
            ratio = NOT_RUN if limits[peer].why_not(metric.key) else MISSING
            if first is not None and other is not None and other.median > 0:
                ratio = f"{first.median / other.median:.2f}"
            row.append(ratio)
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def notes(limits: Mapping[str, Limits], failures: Mapping[str, Sequence[str]]) -> str:
    """What differs per subject: scenarios not run and why, smaller runs, settings, failures."""
    out = []
    for label, limit in limits.items():
        for prefix, why in limit.unsupported.items():
            out.append(f"- {label}, `{prefix}*` not run ({NOT_RUN}): {why}.")
        for prefix, share in limit.process_share.items():
            out.append(f"- {label}, `{prefix}*`: {share:.0%} of the jobs per run (slow).")
        out.extend(f"- {label}: {note}." for note in limit.notes)
        out.extend(f"- {label} FAILED {message}" for message in failures.get(label, ()))
    return "\n".join(out)


def section(
    command: str,
    date: str,
    environment: Mapping[str, str],
    metrics: Sequence[Metric],
    results: Results,
    limits: Mapping[str, Limits],
    runs: int,
) -> str:
    """The generated part of ``docs/performance.md``."""
    env = "\n".join(f"- {name}: {value}" for name, value in environment.items())
    labels = list(limits)
    samples = results.samples
    parts = [
        f"""{BEGIN}
## Latest results

Command: `{command}` — run on {date}.

{env}

Each cell is the median of {runs} run(s), with the range (min-max) in brackets. For jobs/s and
calls/s higher is better; for latency and CPU per job lower is better."""
    ]
    if has_rows(metrics, samples, "main"):
        parts.append(table(metrics, samples, limits, "main"))
    if len(labels) > 1 and has_rows(metrics, samples, "main"):
        parts.append(
            f"Ratios of {labels[0]}'s median to each peer's (above 1 is better for rates, below 1"
            f" for latency):\n\n{ratio_table(metrics, samples, limits)}"
        )
    if has_rows(metrics, samples, "cpu"):
        parts.append(
            "CPU per job during the processing runs (worker process with its children; server"
            f" process from `INFO cpu`):\n\n{table(metrics, samples, limits, 'cpu')}"
        )
    if has_rows(metrics, samples, "dash"):
        parts.append(dash_section(metrics, samples, labels[0]))
    described = notes(limits, results.failures)
    if described:
        parts.append(f"Notes:\n\n{described}")
    return "\n\n".join(parts) + f"\n{END}"


def dash_table(metrics: Sequence[Metric], samples: Samples, label: str) -> str:
    """The dashboard's figures for ``label`` (Corral) beside the targets of issues #6 and #8."""
    lines = ["| scenario | unit | value | target |", "|---|---|---|---|"]
    for metric in _shown(metrics, samples, "dash"):
        cell = _cell(_summary(samples, metric.key, label), metric.unit)
        lines.append(f"| {metric.title} | {metric.unit} | {cell} | {target_of(metric.key)} |")
    return "\n".join(lines)


def dash_section(metrics: Sequence[Metric], samples: Samples, label: str) -> str:
    """The dashboard part of the generated section."""
    return f"""### The dashboard

A real `corral dash` process on an 80x24 pseudo-terminal whose output a terminal emulator
(pyte) turns into the screen, with keyspace notifications on (`live`, as `corral demo` runs the
server) and off (`polling`). Its CPU and RSS come from `/proc`; the engine load is producer and
worker processes on the same machine, so the rate it reaches is shown beside them. "On screen"
times end when the bytes that draw the change arrive; the big queue's backend reads are the
dashboard backend's own calls, timed in the harness. The `--bullmq` rows are `corral dash
--bullmq` while Node BullMQ producer and worker processes run a queue under `bull` (removed on
completion); "events tail" rows say whether the dashboard read every entry of BullMQ's events
stream (trimmed at about 10,000 entries) before BullMQ trimmed it: a gap is what raises its
"events trimmed before they were read" alert.

{dash_table(metrics, samples, label)}"""


DOC_HEAD = """# Performance

How fast Corral adds and runs jobs, measured against Node BullMQ, the official Python port of
BullMQ, RQ and arq on the same private server, each peer in its own processes.
The harness is not part of the test suite; run it with `python -m bench` (`--quick` for a smoke
run, `--help` for the options). It starts its own server on 127.0.0.1 without persistence,
installs the pinned peer packages into an ignored folder on first use (`bench/.peers/node` with
npm; `bench/.peers/python/<peer>`, one virtual environment per Python peer, with hiredis as
Corral has it), and rewrites the results section below. `--peer NAME` (repeatable: `node`,
`bullmq-py`, `rq`, `arq`) picks peers; `--no-node` and `--no-python` skip them.

## What is measured

- **add one by one**: no-op jobs added with one awaited call each.
- **add bulk**: the same jobs added with bulk calls.
- **process**: jobs added beforehand; one worker process with a no-op processor, timed from the
  moment it is told to start until a separate client, polling every 50 ms, sees all done.
- **add→start**: jobs added at a steady rate while one worker runs; the delay is the job's
  start time minus its add time as stored in the job (Corral: both from the server clock; the
  peers: both from the clients' clocks, on the same machine). Corral, BullMQ and arq store whole
  milliseconds, so p50 values of 0-2 ms are at the resolution limit; RQ stores microseconds.
- **trivial EVALSHA**: a one-`INCR` script called from the client library (redis-py asyncio
  for Corral, ioredis for BullMQ) by concurrent tasks, plain and pipelined: the ceiling that
  client and server put on anything doing one script call per job. The Python peers use
  redis-py too, so Corral's row is theirs.

- **the dashboard** (Corral only): a real `corral dash` on an 80x24 pseudo-terminal, its output
  turned into the screen by a terminal emulator (pyte), with keyspace notifications on (`live`)
  and off (`polling`):
  - its CPU (% of one core, from `/proc`) and peak RSS while producer and worker processes run
    the engine at a target rate (`--dash-rate`, default 5,000 jobs/s; `--dash-producers`,
    `--dash-workers`): the jobs added and completed per second meanwhile are shown beside them,
    since a small machine may not reach the target;
  - the time from adding a job (a job every 0.2-0.5 s) until the overview shows the new count;
  - a queue of 1,000,000 waiting jobs (`--big-jobs`): the dashboard backend's own reads
    (finding the queues, the counts, the first, middle and last page), and on the screen the
    time from start to the queue shown, from Enter to its first page, and from `n` to the next.
  - `corral dash --bullmq` the same way while Node BullMQ 6.7 producer and worker processes
    run a queue under the prefix `bull` at the target rate (`--only dash-bullmq`): its CPU and
    peak RSS, the rate BullMQ reached, and whether its events tail kept up with BullMQ's events
    stream (about 4 entries per job, trimmed at about 10,000): gaps it detected (each one the
    "events trimmed before they were read" alert), the share of entries it read, the age of the
    newest entry at each read, the reads that hit its read size, and the connections the server
    dropped because their output buffer filled (in live mode: notifications coming faster than
    the dashboard reads them). The tail's figures come from `bench/dash_probe.py`, which runs
    the real `corral dash` with a counter around its stream reads.

A peer that lacks a feature shows `n/a` with the reason under the tables: RQ has no
concurrency within one worker process and runs one job per forked work horse (as `rq worker`
does), arq has no bulk add and runs with `poll_delay=0.01` instead of its default 0.5 s (which
holds it to 2 jobs/s at concurrency 1). Peers that need minutes for the full count process a
tenth of the jobs per run, as the notes say.

Each process run also records CPU per job: the worker process's own CPU time (from `go` to
`stop`; with its children's for the Python peers, as RQ runs each job in a child) and the
server's (`INFO cpu`), divided by the jobs. These move less with machine load than jobs/s do.
Differences under ~25 % are noise on small shared machines: compare within one run, by ratio.

"""


def write_docs(path: Path, generated: str) -> None:
    """Replace the generated section of ``path`` (creating the file if needed), keeping the
    text around it."""
    if path.exists():
        text = path.read_text(encoding="utf-8")
        if BEGIN in text and END in text:
            before, _, rest = text.partition(BEGIN)
            _, _, after = rest.partition(END)
            path.write_text(before + generated + after, encoding="utf-8")
            return
    path.write_text(DOC_HEAD + generated + "\n", encoding="utf-8")
