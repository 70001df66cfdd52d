"""Job processors the tests run, in-process or in ``corral worker`` processes.

Each ledger processor appends one JSON line per start and per finish to the file named by
``CORRAL_LEDGER`` (opened with O_APPEND and flushed before returning), outside the Redis under
test, so a SIGKILL cannot lose what was written; ``support.ledger`` reads it back.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path
from typing import Any

from engine import Job


def record(kind: str, job: Job) -> None:
    """Append one ledger line for ``job`` (no-op when CORRAL_LEDGER is unset)."""
    path = os.environ.get("CORRAL_LEDGER")
    if not path:
        return
    line = json.dumps(
        {
            "kind": kind,
            "job_id": job.id,
            "attempt": job.attempts_started,
            "pid": os.getpid(),
            "t": time.time(),
        }
    )
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


async def ledger_job(job: Job) -> Any:
    """Record start, sleep ``data["sleep"]`` seconds, die at once if ``data["die"]``, record
    finish, return the data."""
    record("start", job)
    data = job.data if isinstance(job.data, dict) else {}
    if data.get("die"):
        os._exit(1)
    await asyncio.sleep(float(data.get("sleep", 0)))
    record("finish", job)
    return data


async def slow_first_run_job(job: Job) -> Any:
    """``ledger_job`` whose first attempt sleeps ``data["first_sleep"]`` seconds and any later
    one ``data["sleep"]``: a job held by a worker that is killed cannot finish before the kill,
    yet its re-run after the stalled recovery is short."""
    record("start", job)
    data = job.data if isinstance(job.data, dict) else {}
    first = job.attempts_started <= 1
    await asyncio.sleep(float(data.get("first_sleep", 0) if first else data.get("sleep", 0)))
    record("finish", job)
    return data


def blocking_job(job: Job) -> Any:
    """A ``def`` processor that blocks its thread for ``data["sleep"]`` seconds."""
    record("start", job)
    time.sleep(float(job.data.get("sleep", 0)))
    record("finish", job)
    return {"slept": job.data.get("sleep", 0)}


async def noop(job: Job) -> Any:
    """Return the job's data."""
    return job.data


async def cancellable_job(job: Job) -> Any:
    """Record start, sleep ``data["sleep"]`` seconds; if cancelled, record ``cancelled`` (and
    whether ``job.cancelled`` was set) before re-raising."""
    record("start", job)
    try:
        await asyncio.sleep(float(job.data.get("sleep", 0)))
    except asyncio.CancelledError:
        record("cancelled" if job.cancelled else "stopped", job)
        raise
    record("finish", job)
    return job.data


def cooperative_sync_job(job: Job) -> Any:
    """A ``def`` processor that works in small steps for up to ``data["sleep"]`` seconds and
    stops early when ``job.raise_if_cancelled()`` raises."""
    record("start", job)
    deadline = time.monotonic() + float(job.data.get("sleep", 0))
    try:
        while time.monotonic() < deadline:
            job.raise_if_cancelled()
            time.sleep(0.02)
    except BaseException:
        record("cancelled", job)
        raise
    record("finish", job)
    return {"done": True}


async def always_fails(job: Job) -> Any:
    """Log a line, then fail with ``data["error"]`` as the message."""
    await job.log(f"attempt {job.attempts_started}")
    raise RuntimeError(str(job.data.get("error", "failed")))


async def dependency_job(job: Job) -> Any:
    """Call a pretend dependency: sleep ``data["sleep"]`` seconds, then fail with
    ``ConnectionError`` while the file named by ``CORRAL_DEPENDENCY`` says ``down``. Records
    ``start``, then ``finish`` or ``fail``."""
    record("start", job)
    data = job.data if isinstance(job.data, dict) else {}
    await asyncio.sleep(float(data.get("sleep", 0)))
    path = os.environ.get("CORRAL_DEPENDENCY")
    if path and Path(path).read_text().strip() == "down":  # noqa: ASYNC240 - a tiny local file
        record("fail", job)
        raise ConnectionError("dependency is down")
    record("finish", job)
    return data
