"""AttemptStop: why a running attempt must end early (a cancel request, or its deadline).

The worker keeps one per running job. The processing code waits on ``future`` beside the
processor; ``job.cancelled`` and ``job.raise_if_cancelled()`` read it from the processor's side
(from any thread). Process-pool processors (the sandbox) need nothing more: they are awaited
like ``async def`` processors, so a stop cancels the task awaiting the child, and the pool
kills the child in its ``CancelledError`` handler; ``reason`` says whether it was a timeout or
a cancel.
"""

from __future__ import annotations

import asyncio

from .errors import JobCancelled, JobTimeout

StopReason = JobCancelled | JobTimeout


class AttemptStop:
    """Set once, by ``request``: the first reason wins; later requests are ignored."""

    def __init__(self) -> None:
        self._reason: StopReason | None = None
        self._future: asyncio.Future[StopReason] | None = None

    @property
    def reason(self) -> StopReason | None:
        """The stop requested so far, or None."""
        return self._reason

    @property
    def cancelled(self) -> bool:
        """True once a cancel (not a timeout) was requested."""
        return isinstance(self._reason, JobCancelled)

    def request(self, reason: StopReason) -> bool:
        """Ask the attempt to stop (call on the event loop); False if it was asked before."""
        if self._reason is not None:
            return False
        self._reason = reason
        if self._future is not None and not self._future.done():
            self._future.set_result(reason)
        return True

    def future(self) -> asyncio.Future[StopReason]:
        """Completes with the reason when a stop is requested (made on first use, on the loop)."""
        if self._future is None:
            self._future = asyncio.get_running_loop().create_future()
            if self._reason is not None:
                self._future.set_result(self._reason)
        return self._future

    def fresh_error(self) -> StopReason | None:
        """A new exception for the reason (each raise gets its own traceback), or None."""
        reason = self._reason
        return None if reason is None else type(reason)(str(reason))
