"""A processor for the scenarios where two workers run the same job (W4, N1): its return value
names the process that ran it, so a test can tell whose result was recorded. ``corral worker
reliability.stamped_jobs:stamped_job`` runs it (the worker processes start in ``tests/``)."""

from __future__ import annotations

import asyncio
import os
from typing import Any

from support.jobs import record

from engine import Job


async def stamped_job(job: Job) -> Any:
    """Record start and finish in the ledger, as ``support.jobs.ledger_job``; sleep
    ``data["first_sleep"]`` seconds on the first attempt and ``data["sleep"]`` on any later
    one (a re-run after a stall); return ``{"pid": <this process>}``."""
    record("start", job)
    data = job.data if isinstance(job.data, dict) else {}
    first = job.attempts_started <= 1
    await asyncio.sleep(float(data.get("first_sleep", 0) if first else data.get("sleep", 0)))
    record("finish", job)
    return {"pid": os.getpid()}
