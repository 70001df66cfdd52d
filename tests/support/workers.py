"""Running workers for tests: in this process (``running_worker``) or as real ``corral worker``
processes that tests signal (``WorkerProcess``)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from engine import Queue, Worker, commands

TESTS_DIR = Path(__file__).resolve().parent.parent


@contextlib.asynccontextmanager
async def running_worker(*args: Any, **kwargs: Any) -> AsyncIterator[Worker]:
    """Start ``Worker(*args, **kwargs).run()`` in a task; close it on exit."""
    kwargs.setdefault("block_timeout", 1.0)
    worker = Worker(*args, **kwargs)
    task = asyncio.create_task(worker.run())
    try:
        yield worker
    finally:
        await worker.close()
        await asyncio.wait_for(task, 30)


class WorkerProcess:
    """``python -m corral worker TARGET`` as a child process, with the ledger env var set (and
    any ``env`` given, e.g. to skew its clock)."""

    def __init__(
        self,
        target: str,
        queue: str,
        url: str,
        *,
        ledger: Path | None = None,
        concurrency: int = 1,
        lock_duration: int = 1000,
        stalled_interval: int = 500,
        max_stalled_count: int = 1,
        shutdown_grace: float = 30.0,
        extra_args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        log_file: Path | None = None,
    ) -> None:
        env = {**os.environ, **(env or {})}
        if ledger is not None:
            env["CORRAL_LEDGER"] = str(ledger)
        self.args = [
            sys.executable, "-m", "corral", "worker", target, "--queue", queue,
            "--redis", url, "--concurrency", str(concurrency),
            "--lock-duration", str(lock_duration), "--stalled-interval", str(stalled_interval),
            "--max-stalled-count", str(max_stalled_count), "--shutdown-grace", str(shutdown_grace),
            *extra_args,
        ]  # fmt: skip
        # a long run logs more than a pipe holds: without a reader it would block the worker
        self.log_file = log_file
        sink = open(log_file, "a") if log_file is not None else subprocess.PIPE  # noqa: SIM115
        self.proc = subprocess.Popen(
            self.args,
            cwd=TESTS_DIR,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            text=True,
        )
        if log_file is not None:
            sink.close()  # type: ignore[union-attr]

    def signal(self, sig: int) -> None:
        """Send ``sig`` to the worker process."""
        self.proc.send_signal(sig)

    def kill(self) -> None:
        """SIGKILL: the process dies holding whatever it held."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def wait(self, timeout: float = 30.0) -> int:
        """Wait for the process to exit; return its exit status."""
        return self.proc.wait(timeout)

    def output(self) -> str:
        """Everything it printed (after it exited)."""
        if self.log_file is not None:
            return self.log_file.read_text()
        assert self.proc.stdout is not None
        return self.proc.stdout.read()

    def stop(self) -> None:
        """Make sure the process is gone (test teardown)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


async def wait_until(predicate: Any, within: float = 10.0, interval: float = 0.05) -> None:
    """Poll an async ``predicate()`` until it is true; fail the test after ``within`` s."""
    deadline = time.monotonic() + within
    while True:
        if await predicate():
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {within} s")
        await asyncio.sleep(interval)


async def sweep_stalled(queue: Queue, every: float = 0.2) -> None:
    """Run the stalled check every ``every`` s through ``queue``'s client, as an idle worker
    elsewhere would, until cancelled: a job whose lock is not renewed is recovered (and gets a
    ``stalled`` event) within its lock duration plus two sweeps."""
    interval_ms = max(int(every * 1000), 10)
    while True:
        await commands.recover_stalled(queue.scripts, queue.keys, 1, interval_ms)
        await asyncio.sleep(every)
