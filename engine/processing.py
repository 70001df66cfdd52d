"""Running one job: call the processor (async on the loop, ``def`` in a thread) and turn what
happened into an outcome: completed with a value, retry after a delay, or failed for good."""

from __future__ import annotations

import asyncio
import inspect
import logging
import traceback
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from concurrent.futures import Future as ConcurrentFuture
from dataclasses import dataclass, replace
from typing import Any

from .errors import JobCancelled, JobTimeout
from .job import Job
from .options import Backoff
from .policies import ErrorPolicy, retry_delay
from .serialization import dumps
from .stopping import AttemptStop, StopReason

log = logging.getLogger("corral.worker")

Processor = Callable[[Job], Any]
MAX_STACK_LINES = 40
STOP_GRACE = 1.0  # seconds a cancelled async processor gets to unwind before it is abandoned


@dataclass(frozen=True, slots=True)
class Outcome:
    """How an attempt ended. ``retry_delay`` is -1 for a final failure."""

    ok: bool
    returnvalue: str = "null"
    reason: str = ""
    stacktrace: str = "[]"
    retry_delay: int = -1
    cancelled: bool = False  # a cancel ended it: final, and never dead-lettered


def is_async_processor(processor: Processor) -> bool:
    """True for ``async def`` functions (and objects whose ``__call__`` is one)."""
    if inspect.iscoroutinefunction(processor):
        return True
    call = getattr(processor, "__call__", None)  # noqa: B004 - looking for an async __call__
    return inspect.iscoroutinefunction(call)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, JobTimeout | JobCancelled):
        return str(exc)  # the engine's own words: "timed out after 30 s", "cancelled by ann"
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _stack(exc: BaseException) -> str:
    lines = traceback.format_exception(exc)
    return dumps([line.rstrip("\n") for line in lines[-MAX_STACK_LINES:]], what="stacktrace")


def failure(
    job: Job,
    exc: BaseException,
    default_backoff: Backoff | None,
    policy: ErrorPolicy | None = None,
) -> Outcome:
    """The outcome of an attempt that raised ``exc``: retry or fail, per ``engine.policies``."""
    delay = retry_delay(
        exc,
        attempts_made=job.attempts_made,
        attempts=job.attempts,
        opts=job.opts,
        policy=policy,
        default_backoff=default_backoff,
    )
    return Outcome(
        False,
        reason=_describe(exc),
        stacktrace=_stack(exc),
        retry_delay=delay,
        cancelled=isinstance(exc, JobCancelled),
    )


async def run_processor(
    processor: Processor,
    job: Job,
    *,
    is_async: bool,
    executor: Executor,
    max_result: int,
    default_backoff: Backoff | None,
    timeout_ms: int | None = None,
    stop: AttemptStop | None = None,
    policy: ErrorPolicy | None = None,
) -> Outcome:
    """Run one attempt of ``job`` and return its outcome. Never raises for the processor's
    errors (SystemExit, KeyboardInterrupt and a processor's own CancelledError included); a
    cancellation of this task by the worker itself propagates (and cancels the processor).

    The attempt ends at whichever comes first: the processor returns or raises, ``timeout_ms``
    passes (``JobTimeout``), or ``stop`` is requested (``JobCancelled``). A stopped ``async``
    processor is cancelled and gets ``STOP_GRACE`` seconds to unwind; a ``def`` processor's
    thread cannot be stopped, so it is abandoned and runs on (see ``engine.threads``).
    """
    stop = stop if stop is not None else AttemptStop()
    attempt = _Attempt.start(processor, job, is_async, executor)
    try:
        stopped = await _wait_attempt(attempt.future, stop, timeout_ms)
    except asyncio.CancelledError:
        attempt.future.cancel()  # the worker is handing the job back: stop the processor too
        raise
    if stopped is not None:
        return await _stop_attempt(attempt, stopped, job, executor, default_backoff, policy)
    task = asyncio.current_task()
    try:
        try:
            result = attempt.future.result()
        except _ProcessorExit as wrapped:
            raise wrapped.exc from None
        if inspect.isawaitable(result):
            result = await result
        value = dumps(result, what=f"return value of job {job.id!r}", limit=max_result)
        return Outcome(True, returnvalue=value)
    except asyncio.CancelledError as exc:
        if task is not None and task.cancelling():
            raise  # the worker is handing the job back
        return failure(job, exc, default_backoff, policy)
    except BaseException as exc:
        return failure(job, exc, default_backoff, policy)


class _ProcessorExit(Exception):
    """SystemExit or KeyboardInterrupt raised by an async processor, carried out of its task."""

    def __init__(self, exc: BaseException) -> None:
        super().__init__(str(exc))
        self.exc = exc


@dataclass(frozen=True, slots=True)
class _Attempt:
    """A running attempt: a task on the loop, or a thread's future (``source``)."""

    future: asyncio.Future[Any]
    source: ConcurrentFuture[Any] | None = None

    @classmethod
    def start(cls, processor: Processor, job: Job, is_async: bool, executor: Executor) -> _Attempt:
        if is_async:

            async def call() -> Any:
                try:
                    return await processor(job)
                except (SystemExit, KeyboardInterrupt) as exc:
                    # a task re-raises these into the event loop; carry them out as a failure
                    raise _ProcessorExit(exc) from exc

            return cls(asyncio.ensure_future(call()))
        source = executor.submit(processor, job)
        return cls(asyncio.wrap_future(source), source)


async def _wait_attempt(
    attempt: asyncio.Future[Any], stop: AttemptStop, timeout_ms: int | None
) -> StopReason | None:
    """Wait for the attempt; return why it must stop if it did not end by itself first."""
    stopped = stop.future()
    timeout = timeout_ms / 1000 if timeout_ms else None
    await asyncio.wait({attempt, stopped}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    if attempt.done():
        return None
    if not stopped.done():
        assert timeout_ms is not None
        stop.request(JobTimeout.after(timeout_ms))
    return stopped.result()


async def _stop_attempt(
    attempt: _Attempt,
    reason: StopReason,
    job: Job,
    executor: Executor,
    default_backoff: Backoff | None,
    policy: ErrorPolicy | None,
) -> Outcome:
    """End an attempt that ran out of time or was cancelled; its failure names where it was."""
    where = _where(attempt, executor)
    task = attempt.future
    if attempt.source is None:
        task.cancel(str(reason))
        await asyncio.wait({task}, timeout=STOP_GRACE)
        if not task.done():
            log.warning(
                "job %s: the processor ignored its cancellation (%s) and runs on, abandoned",
                job.id,
                reason,
            )
        elif not task.cancelled():
            task.exception()  # retrieved, so asyncio does not log "never retrieved"
    else:
        abandon = getattr(executor, "abandon", None)
        thread = abandon(attempt.source) if abandon is not None else None
        if thread is not None:
            log.warning(
                "job %s %s; its thread %s cannot be stopped and runs on, abandoned "
                "(%d abandoned thread(s) still running)",
                job.id,
                reason,
                thread.name,
                getattr(executor, "abandoned", 0),
            )
    outcome = failure(job, reason, default_backoff, policy)
    if where:
        stack = dumps([*where[-MAX_STACK_LINES + 1 :], _describe(reason)], what="stacktrace")
        outcome = replace(outcome, stacktrace=stack)
    return outcome


def _await_chain(coro: Any) -> list[Any]:
    """The frames of a suspended coroutine and of everything it awaits, outermost first
    (``Task.get_stack`` shows only the outermost one)."""
    frames: list[Any] = []
    while coro is not None and len(frames) < MAX_STACK_LINES:
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
        if frame is not None:
            frames.append(frame)
        coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
    return frames


def _where(attempt: _Attempt, executor: Executor) -> list[str]:
    """The processor's current stack: the task's frames, or the thread's."""
    if attempt.source is None:
        if not isinstance(attempt.future, asyncio.Task):
            return []
        frames = _await_chain(attempt.future.get_coro())
        summary = traceback.StackSummary.extract((f, f.f_lineno) for f in frames)
        return [line.rstrip("\n") for line in summary.format()]
    stack_of = getattr(executor, "stack_of", None)
    lines: list[str] = stack_of(attempt.source) if stack_of is not None else []
    return lines


AsyncProcessor = Callable[[Job], Awaitable[Any]]
