"""Stopping a running attempt early: ``AttemptStop`` (why it must stop: a cancel request or its
deadline) and ``Interrupter`` (how: cancel the job's task while its processor runs).

The processor runs in the job's own task, so an attempt costs no extra task. While it runs
(``armed``), a stop request cancels that task with the reason as message: an ``async def``
processor sees ``asyncio.CancelledError`` at its next await; for a ``def`` processor the await
on its thread ends at once and the thread is abandoned (``engine.threads``). The interrupter
remembers where the processor was, for the failure's stack trace. A processor that swallows the
cancellation ends when it returns; its attempt still fails with the stop's reason.

Process-pool processors (the sandbox) need nothing more: they are awaited like ``async def``
processors, so a stop cancels the await on the child and the pool kills the child in its
``CancelledError`` handler; ``AttemptStop.reason`` says whether it was a timeout or a cancel.
"""

from __future__ import annotations

import asyncio
import logging
import traceback
from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import Any

from .errors import JobCancelled, JobTimeout

log = logging.getLogger("corral.worker")

StopReason = JobCancelled | JobTimeout
STOP_GRACE = 1.0  # seconds after which a processor that ignored its cancellation is reported
MAX_FRAMES = 40


class AttemptStop:
    """Set once, by ``request``: the first reason wins; later requests are ignored."""

    def __init__(self) -> None:
        self._reason: StopReason | None = None
        self._listener: Callable[[StopReason], None] | None = None

    @property
    def reason(self) -> StopReason | None:
        """The stop requested so far, or None (readable from any thread)."""
        return self._reason

    @property
    def cancelled(self) -> bool:
        """True once a cancel (not a timeout) was requested."""
        return isinstance(self._reason, JobCancelled)

    def request(self, reason: StopReason) -> bool:
        """Ask the attempt to stop (on the event loop); False if it was asked before."""
        if self._reason is not None:
            return False
        self._reason = reason
        if self._listener is not None:
            self._listener(reason)
        return True

    def listen(self, listener: Callable[[StopReason], None] | None) -> None:
        """Call ``listener(reason)`` when a stop is requested (None to stop listening)."""
        self._listener = listener


class Interrupter:
    """Turns a stop request (or the deadline) into an interruption of ``task`` while ``armed``."""

    def __init__(
        self,
        task: asyncio.Task[Any],
        stop: AttemptStop,
        executor: Executor,
        job_id: str,
        timeout_ms: int | None,
    ) -> None:
        self.armed = False
        self.source: Future[Any] | None = None  # the thread's future, for a def processor
        self.interrupted: StopReason | None = None
        self.where: list[str] = []
        self._task = task
        self._stop = stop
        self._executor = executor
        self._job_id = job_id
        loop = asyncio.get_running_loop()
        self._timer = (
            loop.call_later(timeout_ms / 1000, stop.request, JobTimeout.after(timeout_ms))
            if timeout_ms
            else None
        )
        stop.listen(self._on_stop)

    def close(self) -> None:
        """The attempt is over: no more interruptions."""
        self.armed = False
        if self._timer is not None:
            self._timer.cancel()
        self._stop.listen(None)

    def _on_stop(self, reason: StopReason) -> None:
        if not self.armed or self.interrupted is not None:
            return
        self.interrupted = reason
        if self.source is None:
            self.where = _task_stack(self._task)
            log.warning("job %s %s; cancelling its processor", self._job_id, reason)
            asyncio.get_running_loop().call_later(STOP_GRACE, self._report_ignored)
        else:
            self.where = _thread_stack(self._executor, self.source)
            abandon = getattr(self._executor, "abandon", None)
            thread = abandon(self.source) if abandon is not None else None
            if thread is not None:
                log.warning(
                    "job %s %s; its thread %s cannot be stopped and runs on, abandoned "
                    "(%d abandoned thread(s) still running)",
                    self._job_id,
                    reason,
                    thread.name,
                    getattr(self._executor, "abandoned", 0),
                )
        self._task.cancel(str(reason))

    def _report_ignored(self) -> None:
        if self.armed:
            log.warning(
                "job %s: the processor ignored its cancellation (%s); the job stays active "
                "until it returns",
                self._job_id,
                self.interrupted,
            )


def _task_stack(task: asyncio.Task[Any]) -> list[str]:
    """Where the processor awaits: the task's await chain below ``run_processor``
    (``Task.get_stack`` shows only the outermost coroutine)."""
    frames: list[Any] = []
    coro: Any = task.get_coro()
    while coro is not None and len(frames) < 2 * MAX_FRAMES:
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
        if frame is not None:
            frames.append(frame)
        coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
    names = [f.f_code.co_name for f in frames]
    if "run_processor" in names:
        frames = frames[names.index("run_processor") + 1 :]
    summary = traceback.StackSummary.extract((f, f.f_lineno) for f in frames[-MAX_FRAMES:])
    return [line.rstrip("\n") for line in summary.format()]


def _thread_stack(executor: Executor, source: Future[Any]) -> list[str]:
    stack_of = getattr(executor, "stack_of", None)
    lines: list[str] = stack_of(source) if stack_of is not None else []
    return lines
