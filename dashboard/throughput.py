"""Jobs per second from the monotonic completed/failed counters, with bounded history."""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field

HISTORY_LEN = 60
"""Samples kept per series: one per bucket (about a minute at one bucket per second)."""


@dataclass(slots=True)
class _Series:
    completed_base: int
    failed_base: int
    completed_per_sec: float = 0.0
    failed_per_sec: float = 0.0
    history: deque[float] = field(default_factory=lambda: deque(maxlen=HISTORY_LEN))
    completed_history: deque[float] = field(default_factory=lambda: deque(maxlen=HISTORY_LEN))
    failed_history: deque[float] = field(default_factory=lambda: deque(maxlen=HISTORY_LEN))


class Throughput:
    """Turns counter readings into per-queue and overall rates, one bucket per ``bucket_s``.

    All queues share one bucket clock, so the overall series is the sum of the queues' deltas.
    A counter that goes down (the server lost its data) restarts that queue's baseline.
    """

    def __init__(self, bucket_s: float = 1.0, history_len: int = HISTORY_LEN) -> None:
        self.bucket_s = bucket_s
        self._history_len = history_len
        self._series: dict[str, _Series] = {}
        self._bucket_start: float | None = None
        self.completed_history: deque[float] = deque(maxlen=history_len)
        self.failed_history: deque[float] = deque(maxlen=history_len)

    def observe(self, now: float, totals: Mapping[str, tuple[int, int]]) -> bool:
        """Feed ``queue -> (completed_total, failed_total)`` read at monotonic ``now``.

        Returns True when a bucket closed and new rates were computed.
        """
        for queue in set(self._series) - set(totals):
            del self._series[queue]
        for queue, (completed, failed) in totals.items():
            if queue not in self._series:
                self._series[queue] = _Series(
                    completed,
                    failed,
                    history=deque(maxlen=self._history_len),
                    completed_history=deque(maxlen=self._history_len),
                    failed_history=deque(maxlen=self._history_len),
                )
        if self._bucket_start is None:
            self._bucket_start = now
            return False
        elapsed = now - self._bucket_start
        if elapsed < self.bucket_s:
            return False
        completed_sum = failed_sum = 0.0
        for queue, (completed, failed) in totals.items():
            series = self._series[queue]
            done = completed - series.completed_base
            lost = failed - series.failed_base
            if done < 0 or lost < 0:
                done = lost = 0
            series.completed_per_sec = done / elapsed
            series.failed_per_sec = lost / elapsed
            series.history.append(series.completed_per_sec + series.failed_per_sec)
            series.completed_history.append(series.completed_per_sec)
            series.failed_history.append(series.failed_per_sec)
            series.completed_base, series.failed_base = completed, failed
            completed_sum += series.completed_per_sec
            failed_sum += series.failed_per_sec
        self.completed_history.append(completed_sum)
        self.failed_history.append(failed_sum)
        self._bucket_start = now
        return True

    def rates(self, queue: str) -> tuple[float, float]:
        """Latest ``(completed/s, failed/s)`` of a queue."""
        series = self._series.get(queue)
        return (series.completed_per_sec, series.failed_per_sec) if series else (0.0, 0.0)

    def history(self, queue: str) -> tuple[float, ...]:
        """Finished jobs per second of a queue, oldest first."""
        series = self._series.get(queue)
        return tuple(series.history) if series else ()

    def split_history(self, queue: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """Completed and failed jobs per second of a queue, each oldest first."""
        series = self._series.get(queue)
        if series is None:
            return (), ()
        return tuple(series.completed_history), tuple(series.failed_history)
