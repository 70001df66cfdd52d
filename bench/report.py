"""Medians and spreads of the samples, the result tables, and ``docs/performance.md``."""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.scenarios import Metric, Samples

BEGIN = "<!-- bench:results:begin -->"
END = "<!-- bench:results:end -->"
MISSING = "—"


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
    if unit == "ms":
        return f"{value:.2f}" if value < 10 else f"{value:.1f}"
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


def table(metrics: Sequence[Metric], samples: Samples, labels: Sequence[str], kind: str) -> str:
    """A Markdown table of ``kind`` metrics: median (min-max) per subject, and the ratio of
    the first subject's median to the second's."""
    head = ["scenario", "unit", *labels]
    if len(labels) > 1:
        head.append(f"ratio {labels[0]} / {labels[1]}")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for metric in metrics:
        if metric.table != kind or metric.key not in samples:
            continue
        summaries = [_summary(samples, metric.key, label) for label in labels]
        row = [metric.title, metric.unit, *(_cell(s, metric.unit) for s in summaries)]
        if len(labels) > 1:
            first, second = summaries[0], summaries[1]
            ratio = MISSING
            if first is not None and second is not None and second.median > 0:
                ratio = f"{first.median / second.median:.2f}"
            row.append(ratio)
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def section(
    command: str,
    date: str,
    environment: Mapping[str, str],
    metrics: Sequence[Metric],
    samples: Samples,
    labels: Sequence[str],
    runs: int,
) -> str:
    """The generated part of ``docs/performance.md``."""
    env = "\n".join(f"- {name}: {value}" for name, value in environment.items())
    return f"""{BEGIN}
## Latest results

Command: `{command}` — run on {date}.

{env}

Each cell is the median of {runs} run(s), with the range (min-max) in brackets. For jobs/s and
calls/s higher is better; for latency and CPU per job lower is better. The ratio is
{labels[0]}'s median over {labels[1] if len(labels) > 1 else "the peer"}'s.

{table(metrics, samples, labels, "main")}

CPU per job during the processing runs (worker process; server process from `INFO cpu`):

{table(metrics, samples, labels, "cpu")}
{END}"""


DOC_HEAD = """# Performance

How fast Corral adds and runs jobs, measured against Node BullMQ on the same private server.
The harness is not part of the test suite; run it with `python -m bench` (`--quick` for a smoke
run, `--help` for the options). It starts its own server on 127.0.0.1 without persistence,
installs the pinned peer packages into an ignored folder on first use, and rewrites the results
section below.

## What is measured

- **add one by one**: no-op jobs added with one awaited call each.
- **add bulk**: the same jobs added with bulk calls.
- **process**: jobs added beforehand; one worker process with a no-op processor, timed from the
  moment it is told to start until a separate client, polling every 50 ms, sees all done.
- **add→start**: jobs added at a steady rate while one worker runs; the delay is the job's
  start time minus its add time as stored in the job hash (Corral: both from the server clock;
  BullMQ: both from the clients' clock, on the same machine). Both store whole milliseconds, so
  p50 values of 0-2 ms are at the resolution limit.
- **trivial EVALSHA**: a one-`INCR` script called from the client library (redis-py asyncio
  for Corral, ioredis for BullMQ) by concurrent tasks, plain and pipelined: the ceiling that
  client and server put on anything doing one script call per job.

Each process run also records CPU per job: the worker process's own CPU time (from `go` to
`stop`) and the server's (`INFO cpu`), divided by the jobs. These move less with machine load
than jobs/s do. Differences under ~25 % are noise on small shared machines: compare within one
run, by ratio.

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
