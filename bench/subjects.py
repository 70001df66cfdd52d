"""What a benchmarked system must offer the scenarios (Corral and each peer implement it)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

QUEUE = "bench"
SEED_CHUNK = 1000


@dataclass(frozen=True, slots=True)
class Latency:
    """Add-to-start delays of one steady-rate run, in milliseconds."""

    p50_ms: float
    p99_ms: float
    jobs: int
    achieved_rate: float


@dataclass(frozen=True, slots=True)
class WorkerSpec:
    """How to start one worker process that speaks the ``bench.child`` protocol."""

    argv: list[str]
    cwd: Path
    env: dict[str, str]


@dataclass(frozen=True, slots=True)
class Limits:
    """What a subject cannot do, or does differently; keys are scenario-name prefixes
    (``bulk``, ``process-c50``, ``ceiling``...), shown under the tables."""

    unsupported: Mapping[str, str] = field(default_factory=dict)
    """Scenario prefix -> why the subject does not run it."""
    process_share: Mapping[str, float] = field(default_factory=dict)
    """Scenario prefix -> share of the jobs a processing run uses, when less than all (peers
    that would take many minutes for all of them)."""
    notes: tuple[str, ...] = ()
    """How the subject is set up, where that is not its default."""

    def why_not(self, scenario: str) -> str | None:
        """Why ``scenario`` is not run, or None if it is."""
        return next((why for p, why in self.unsupported.items() if scenario.startswith(p)), None)

    def jobs_for(self, scenario: str, jobs: int) -> int:
        """Jobs to process in ``scenario``: ``jobs``, or the subject's share of them."""
        shares = [share for p, share in self.process_share.items() if scenario.startswith(p)]
        return max(1, round(jobs * min([1.0, *shares])))


class Subject(Protocol):
    """One job engine under test, on the harness's server."""

    label: str
    limits: Limits

    async def add_one_by_one(self, jobs: int) -> float:
        """Add ``jobs`` no-op jobs, awaiting each; return the seconds it took."""
        ...

    async def add_bulk(self, jobs: int, chunk: int) -> float:
        """Add ``jobs`` no-op jobs in bulk calls of ``chunk``; return the seconds it took."""
        ...

    async def seed(self, jobs: int, remove_on_complete: bool) -> None:
        """Add ``jobs`` no-op jobs, untimed, for a processing run."""
        ...

    def worker(self, concurrency: int) -> WorkerSpec:
        """The worker process to run for this subject."""
        ...

    async def remaining(self, jobs: int) -> int:
        """How many of the ``jobs`` seeded are not finished yet (read by a separate client)."""
        ...

    async def latency(self, rate: float, seconds: float) -> Latency:
        """Add jobs at ``rate`` per second for ``seconds`` while a worker runs; wait until all
        are done and return their add-to-start delays."""
        ...

    async def ceiling(self, tasks: int, pipeline: int, seconds: float) -> float:
        """Trivial script calls per second from ``tasks`` concurrent callers, ``pipeline`` calls
        per round trip, measured for ``seconds``."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...


def percentile(sorted_values: list[float], q: float) -> float:
    """The nearest-rank percentile ``q`` (0-1) of an ascending list."""
    if not sorted_values:
        raise ValueError("no values")
    rank = min(len(sorted_values) - 1, max(0, math.ceil(q * len(sorted_values)) - 1))
    return sorted_values[rank]
