"""The processors the benchmark's Corral worker runs."""

from __future__ import annotations

from engine import Job


async def noop(job: Job) -> None:
    """Do nothing: the benchmark measures the engine, not the work."""
    return None
