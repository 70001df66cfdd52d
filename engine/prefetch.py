"""How many jobs a worker holds beyond those it runs: a few more, only while jobs are short.

A worker with low concurrency and short jobs spends most of its time waiting for the server to
record a job and hand it the next one. Holding a few extra jobs lets the next one start while
the last one's completion is on the wire (see ``completions.py``), which is where a small
worker's throughput comes from. A held job is active with a renewed lock like a running one,
so a long job would keep it from other workers for no gain: the worker prefetches only while
the recent average run time of its jobs stays under ``FAST_JOB_MS``.
"""

from __future__ import annotations

from dataclasses import dataclass

FAST_JOB_MS = 2.0  # jobs this short are dominated by the round trip that records them
PREFETCH = 6  # extra jobs held by a worker of low concurrency
BUSY_ENOUGH = 8  # from this concurrency on, concurrent jobs keep the round trips overlapped
_WEIGHT = 0.05  # of the newest run in the moving average


@dataclass(slots=True)
class Prefetch:
    """Tracks the moving average run time of a worker's jobs and says how many extra to hold."""

    concurrency: int
    enabled: bool = True
    average_ms: float | None = None

    def ran(self, ms: float) -> None:
        """Record one job's run time."""
        if self.average_ms is None:
            self.average_ms = ms
        else:
            self.average_ms += (ms - self.average_ms) * _WEIGHT

    @property
    def extra(self) -> int:
        """Jobs to hold beyond ``concurrency`` now: none until jobs are known to be short."""
        if not self.enabled or self.average_ms is None or self.average_ms >= FAST_JOB_MS:
            return 0
        return PREFETCH if self.concurrency < BUSY_ENOUGH else 0


def completion_batch(concurrency: int) -> int:
    """The most completions one call records: half of what the worker may hold, so that with
    two calls in flight one batch is recorded while the jobs of the other run."""
    held = concurrency + (PREFETCH if concurrency < BUSY_ENOUGH else 0)
    return -(-held // 2)
