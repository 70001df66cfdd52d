"""Processors and a producer for flow tests that run in other processes.

``flow_job`` is a ``corral worker`` processor: parents return what they read of their children,
other jobs record themselves in the ledger, sleep ``data["sleep"]`` seconds and return their
data. ``python -m support.flow_adder`` adds one flow many times from one process.
"""

from __future__ import annotations

import asyncio
from typing import Any

from engine import Job
from support.jobs import record


async def flow_job(job: Job) -> Any:
    """See the module docstring."""
    record("start", job)
    if job.name == "parent":
        values = await job.get_children_values()
        record("finish", job)
        children = sorted(str(ref) for ref in values)
        return {"children": children, "values": sorted(str(v) for v in values.values())}
    data = job.data if isinstance(job.data, dict) else {}
    await asyncio.sleep(float(data.get("sleep", 0)))
    record("finish", job)
    return data.get("value")
