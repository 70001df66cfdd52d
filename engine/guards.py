"""Worker guards: recycle a worker before it leaks (``max_jobs``, ``max_memory``).

A guard that trips calls the worker's ``recycle(reason)``: the worker stops taking jobs, lets
running ones finish within its shutdown grace, hands back the rest, and ``run()`` returns with
``worker.recycled`` set; ``corral worker`` then exits with status 4 so that a supervisor
(``corral worker --supervise``, systemd, Kubernetes) starts a fresh process.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import resource
import sys
from collections.abc import Callable

from .errors import InvalidJobOptions

log = logging.getLogger("corral.worker")

MEMORY_CHECK_INTERVAL = 1.0  # seconds between two reads of the resident set size

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b?)\s*$", re.IGNORECASE)
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_size(value: object, name: str = "max_memory") -> int:
    """Bytes from ``512MB``, ``1.5G``, ``800KiB`` or a number of bytes (units are 1024-based)."""
    if isinstance(value, int) and not isinstance(value, bool):
        size = value
    else:
        match = _SIZE.match(value) if isinstance(value, str) else None
        if match is None:
            raise InvalidJobOptions(
                f"{name}={value!r} is invalid: expected a size such as 512MB, 2G or a number "
                "of bytes"
            )
        size = int(float(match.group(1)) * _UNITS[match.group(2).lower()])
    if size < 1 << 20:
        raise InvalidJobOptions(f"{name}={value!r} is invalid: expected at least 1MB")
    return size


def rss_bytes(pid: int | None = None) -> int | None:
    """Resident set size of process ``pid`` (default: this one), or None if it cannot be read.

    Reads ``/proc/<pid>/statm`` (Linux); elsewhere, for this process only, falls back to the
    peak RSS from ``getrusage``.
    """
    try:
        with open(f"/proc/{pid or 'self'}/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        pass
    if pid is not None and pid != os.getpid():
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


class JobBudget:
    """How many more jobs a worker may take before it recycles (unlimited without a maximum).

    Leases ask for at most what is left, but two finishing jobs can each take a replacement in
    the same instant; a job taken beyond the budget is handed straight back to the queue.
    """

    def __init__(self, max_jobs: int | None) -> None:
        if max_jobs is not None and (
            not isinstance(max_jobs, int) or isinstance(max_jobs, bool) or max_jobs < 1
        ):
            raise InvalidJobOptions(f"max_jobs={max_jobs!r} is invalid: expected an integer >= 1")
        self.max_jobs = max_jobs
        self.taken = 0

    def allow(self, count: int) -> int:
        """``count`` cut to what is left of the budget."""
        if self.max_jobs is None:
            return count
        return max(0, min(count, self.max_jobs - self.taken))

    def take(self, count: int) -> int:
        """How many of ``count`` jobs just taken the worker may run (the rest go back)."""
        kept = self.allow(count)
        self.taken += kept
        return kept

    @property
    def used_up(self) -> bool:
        """True once the worker has taken ``max_jobs`` jobs."""
        return self.max_jobs is not None and self.taken >= self.max_jobs


class MemoryGuard:
    """Trips when this process's resident memory passes the limit: checked before every take of
    jobs and once a second (for long jobs and idle workers)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit

    def check(self) -> str | None:
        """Why the worker must recycle now, or None while memory is within the limit."""
        rss = rss_bytes()
        if rss is None or rss <= self.limit:
            return None
        return f"memory {rss >> 20} MiB is over --max-memory {self.limit >> 20} MiB"

    async def run(self, trip: Callable[[str], None]) -> None:
        """Call ``trip(reason)`` the first time memory is over the limit, then return."""
        while True:
            reason = self.check()
            if reason is not None:
                trip(reason)
                return
            await asyncio.sleep(MEMORY_CHECK_INTERVAL)
