"""Running one job: call the processor (async on the loop, ``def`` in a thread) and turn what
happened into an outcome: completed with a value, retry after a delay, or failed for good."""

from __future__ import annotations

import asyncio
import inspect
import traceback
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from dataclasses import dataclass, replace
from typing import Any

from .errors import DelayedError, JobCancelled, JobTimeout, RateLimitError
from .job import Job
from .options import Backoff
from .policies import ErrorPolicy, retry_delay
from .serialization import dumps
from .stopping import AttemptStop, Interrupter

Processor = Callable[[Job], Any]
MAX_STACK_LINES = 40


@dataclass(frozen=True, slots=True)
class Outcome:
    """How an attempt ended. ``retry_delay`` is -1 for a final failure. ``requeue`` is set
    when the job neither completed nor failed: "rate-limited" (back to wait) or "delayed"
    (the processor moved it to delayed)."""

    ok: bool
    returnvalue: str = "null"
    reason: str = ""
    stacktrace: str = "[]"
    retry_delay: int = -1
    cancelled: bool = False  # a cancel ended it: final, and never dead-lettered
    requeue: str = ""


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
    cancellation of this task by the worker itself propagates.

    The processor runs in this task (a thread for ``def``). If ``timeout_ms`` passes
    (``JobTimeout``) or ``stop`` is requested (``JobCancelled``) while it runs, it is
    interrupted (see ``engine.stopping``) and the attempt fails with that reason.
    """
    if job.deferred_failure is not None:  # a child failed with fail_parent_on_failure
        return Outcome(False, reason=job.deferred_failure, retry_delay=-1)
    stop = stop if stop is not None else AttemptStop()
    task = asyncio.current_task()
    assert task is not None
    if stop.reason is not None:  # cancelled between being taken and starting
        return failure(job, stop.reason, default_backoff, policy)
    guard = Interrupter(task, stop, executor, job.id, timeout_ms)
    try:
        guard.armed = True
        if is_async:
            result = await processor(job)
        else:
            guard.source = executor.submit(processor, job)
            result = await asyncio.wrap_future(guard.source)
        if inspect.isawaitable(result):
            result = await result
        guard.armed = False
        if guard.interrupted is None:
            value = dumps(result, what=f"return value of job {job.id!r}", limit=max_result)
            return Outcome(True, returnvalue=value)
    except BaseException as exc:
        guard.armed = False
        if guard.interrupted is None:
            if isinstance(exc, asyncio.CancelledError) and task.cancelling():
                raise  # the worker is handing the job back
            if isinstance(exc, RateLimitError):
                return Outcome(False, reason=str(exc), requeue="rate-limited")
            if isinstance(exc, DelayedError):
                return Outcome(False, reason=str(exc), requeue="delayed")
            return failure(job, exc, default_backoff, policy)
    finally:
        guard.close()
    # interrupted: take back our own cancellation; another one (a hand-back) still counts
    task.uncancel()
    if task.cancelling():
        raise asyncio.CancelledError
    assert guard.interrupted is not None
    outcome = failure(job, guard.interrupted, default_backoff, policy)
    if guard.where:
        where = [*guard.where[-MAX_STACK_LINES + 1 :], _describe(guard.interrupted)]
        outcome = replace(outcome, stacktrace=dumps(where, what="stacktrace"))
    return outcome


AsyncProcessor = Callable[[Job], Awaitable[Any]]
