"""Running one job: call the processor (async on the loop, ``def`` in a thread) and turn what
happened into an outcome: completed with a value, retry after a delay, or failed for good."""

from __future__ import annotations

import asyncio
import inspect
import traceback
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

from .errors import (
    DelayedError,
    InvalidJobData,
    PayloadTooLarge,
    RateLimitError,
    Retry,
    UnrecoverableError,
)
from .job import Job
from .options import Backoff
from .serialization import dumps

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
    requeue: str = ""


def is_async_processor(processor: Processor) -> bool:
    """True for ``async def`` functions (and objects whose ``__call__`` is one)."""
    if inspect.iscoroutinefunction(processor):
        return True
    call = getattr(processor, "__call__", None)  # noqa: B004 - looking for an async __call__
    return inspect.iscoroutinefunction(call)


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _stack(exc: BaseException) -> str:
    lines = traceback.format_exception(exc)
    return dumps([line.rstrip("\n") for line in lines[-MAX_STACK_LINES:]], what="stacktrace")


def failure(job: Job, exc: BaseException, default_backoff: Backoff | None) -> Outcome:
    """The outcome of an attempt that raised ``exc``: retry per the job's options, or fail."""
    reason, stack = _describe(exc), _stack(exc)
    attempts_after = job.attempts_made + 1
    final = isinstance(exc, UnrecoverableError | InvalidJobData | PayloadTooLarge)
    if final or attempts_after >= job.attempts:
        return Outcome(False, reason=reason, stacktrace=stack, retry_delay=-1)
    if isinstance(exc, Retry):
        return Outcome(False, reason=reason, stacktrace=stack, retry_delay=exc.delay)
    backoff = Backoff.from_json(job.opts.get("backoff")) or default_backoff
    delay = backoff.delay_for(attempts_after, exc) if backoff else 0
    return Outcome(False, reason=reason, stacktrace=stack, retry_delay=delay)


async def run_processor(
    processor: Processor,
    job: Job,
    *,
    is_async: bool,
    executor: Executor,
    max_result: int,
    default_backoff: Backoff | None,
) -> Outcome:
    """Run one attempt of ``job`` and return its outcome. Never raises for the processor's
    errors (SystemExit, KeyboardInterrupt and a processor's own CancelledError included); a
    cancellation of this task by the worker itself propagates."""
    if job.deferred_failure is not None:  # a child failed with fail_parent_on_failure
        return Outcome(False, reason=job.deferred_failure, retry_delay=-1)
    task = asyncio.current_task()
    try:
        if is_async:
            result = await processor(job)
        else:
            loop = asyncio.get_running_loop()
            result = await loop.run_in_executor(executor, processor, job)
        if inspect.isawaitable(result):
            result = await result
        value = dumps(result, what=f"return value of job {job.id!r}", limit=max_result)
        return Outcome(True, returnvalue=value)
    except asyncio.CancelledError as exc:
        if task is not None and task.cancelling():
            raise  # the worker is handing the job back
        return failure(job, exc, default_backoff)
    except RateLimitError as exc:
        return Outcome(False, reason=str(exc), requeue="rate-limited")
    except DelayedError as exc:
        return Outcome(False, reason=str(exc), requeue="delayed")
    except BaseException as exc:
        return failure(job, exc, default_backoff)


AsyncProcessor = Callable[[Job], Awaitable[Any]]
