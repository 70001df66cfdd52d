"""Processors for sandboxed workers: they run in child processes, so they must be importable.

``data`` steers them: ``sleep`` seconds (``first_sleep`` more on the first attempt), ``exit``
(``os._exit`` with that code), ``raise`` (which exception), ``retry`` (ms for ``Retry``),
``progress``/``log`` to write, ``leak_mb`` to allocate and keep. Every start and finish goes to
the ledger (``support.jobs.record``).
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from engine import Job, Retry, UnrecoverableError
from support.jobs import record

_LEAKED: list[bytes] = []


class NeedsArgs(Exception):
    """An exception whose constructor pickle cannot call again (it needs two arguments)."""

    def __init__(self, code: int, detail: str) -> None:
        super().__init__(f"code {code}: {detail}")
        self.code = code


def _act(job: Job) -> None:
    data = job.data if isinstance(job.data, dict) else {}
    if "exit" in data:
        os._exit(int(data["exit"]))
    kind = data.get("raise")
    if kind == "value":
        raise ValueError(f"bad value in job {job.id}")
    if kind == "unrecoverable":
        raise UnrecoverableError("give up")
    if kind == "needs-args":
        raise NeedsArgs(7, "custom")
    if kind == "system-exit":
        raise SystemExit(3)
    if "retry" in data:
        raise Retry(int(data["retry"]), "try later")
    if data.get("leak_mb"):
        _LEAKED.append(b"x" * (int(data["leak_mb"]) * 1024 * 1024))


async def async_job(job: Job) -> Any:
    """An async processor run in a sandbox child."""
    record("start", job)
    data = job.data if isinstance(job.data, dict) else {}
    if "progress" in data:
        await job.update_progress(data["progress"])
    if "log" in data:
        await job.log(data["log"])
    await asyncio.sleep(float(data.get("sleep", 0)))
    _act(job)
    record("finish", job)
    return {"pid": os.getpid(), "attempt": job.attempts_started}


def cpu_job(job: Job) -> Any:
    """A plain ``def`` processor (CPU-bound work) run in a sandbox child."""
    record("start", job)
    data = job.data if isinstance(job.data, dict) else {}
    if "progress" in data:
        job.update_progress_sync(data["progress"])
    if "log" in data:
        job.log_sync(data["log"])
    seconds = float(data.get("sleep", 0))
    if job.attempts_started == 1:
        seconds += float(data.get("first_sleep", 0))
    deadline = time.monotonic() + seconds
    total = 0
    while time.monotonic() < deadline:
        total += sum(range(1000))
    _act(job)
    record("finish", job)
    return {"pid": os.getpid(), "attempt": job.attempts_started}


not_a_function = 42
