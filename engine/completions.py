"""Group commit of a worker's completed jobs: one ``complete_jobs`` call for every job that
finished while the previous call was in flight.

An idle worker's completion goes out at once (a batch of one: no timer, no added latency). Under
load, jobs finish while a call is on the wire; they wait for it and go together in the next
call, which also takes their replacement jobs. Each job is still fenced by its own lock token
inside the script, and each caller gets its own job's result.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from . import commands
from .commands import Completion, Lease, TakenJob
from .keys import QueueKeys
from .scripts import ScriptRegistry

MAX_BATCH = 100  # jobs per call: bounds the script's run time (a few ms) and the reply size
MAX_IN_FLIGHT = 2  # calls on the wire at once: the server runs one batch while we run the next


@dataclass(slots=True)
class _Pending:
    completion: Completion
    done: asyncio.Future[None]


class CompletionBatcher:
    """Completes jobs for one worker, batching those that finish close together.

    ``lease(n)`` makes the lease for a call that completes ``n`` jobs (the worker decides how
    many replacements it may take); ``start(jobs)`` hands the jobs the call took to the worker,
    before the callers of that batch are told their jobs are complete. ``max_batch`` is the most
    jobs one call completes; with two calls in flight, half the worker's concurrency keeps the
    server busy with one batch while the worker runs the jobs of the other.
    """

    def __init__(
        self,
        scripts: ScriptRegistry,
        keys: QueueKeys,
        lease: Callable[[int], Lease],
        start: Callable[[list[TakenJob]], None],
        metrics_window: int,
        max_batch: int = MAX_BATCH,
    ) -> None:
        self._scripts = scripts
        self._keys = keys
        self._lease = lease
        self._start = start
        self._metrics_window = metrics_window
        self._max_batch = max(1, min(max_batch, MAX_BATCH))
        self._pending: list[_Pending] = []
        self._sending: set[asyncio.Task[None]] = set()
        self._scheduled = False

    async def complete(self, completion: Completion) -> None:
        """Record ``completion``; raises what ``complete_job`` would for this job (LockLost,
        JobNotFound, JobNotActive) or the call's transient error, after which the caller may
        try again."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        self._pending.append(_Pending(completion, done))
        if not self._scheduled:
            # after the callbacks already queued: jobs finishing in this same turn of the
            # loop go in the same call
            self._scheduled = True
            loop.call_soon(self._dispatch)
        await done

    def _dispatch(self) -> None:
        self._scheduled = False
        while self._pending and len(self._sending) < MAX_IN_FLIGHT:
            batch = self._pending[: self._max_batch]
            del self._pending[: self._max_batch]
            task = asyncio.create_task(self._send(batch))
            self._sending.add(task)
            task.add_done_callback(self._sent)

    def _sent(self, task: asyncio.Task[None]) -> None:
        self._sending.discard(task)
        if self._pending and not self._scheduled:
            self._dispatch()

    async def _send(self, batch: list[_Pending]) -> None:
        jobs = [p.completion for p in batch]
        try:
            codes, taken = await commands.complete_jobs(
                self._scripts, self._keys, jobs, self._lease(len(batch)), self._metrics_window
            )
        except BaseException as exc:
            for pending in batch:
                _settle(pending.done, exc)
            if isinstance(exc, asyncio.CancelledError):
                raise
            return
        self._start(taken.jobs)
        for pending, code in zip(batch, codes, strict=True):
            if code < 0:
                try:
                    commands.raise_for_code(
                        code, self._keys, pending.completion.job_id, "complete_jobs"
                    )
                except Exception as exc:  # the job's own refusal, for its caller to log
                    _settle(pending.done, exc)
            else:
                _settle(pending.done, None)


def _settle(done: asyncio.Future[None], error: BaseException | None) -> None:
    if done.done():
        return
    if error is None:
        done.set_result(None)
    elif isinstance(error, asyncio.CancelledError):
        done.cancel()
    else:
        done.set_exception(error)
