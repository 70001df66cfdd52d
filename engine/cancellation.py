"""Cancelling jobs: what ``Queue.cancel_job`` returns, and the worker's ``CancelWatcher``.

``cancel_job.lua`` fails a waiting job at once. For a running job it writes the request into
the job hash with the lock token it is meant for (``cancel_token``, ``cancelled_by``) and
publishes the job id on the queue's cancel channel. Each worker keeps one subscription to that
channel, so it hears of a cancel at once without any per-job polling; because pub/sub is
fire-and-forget, it also reads the requests of the jobs it holds after every (re)subscribe and
every ``recheck`` seconds (the lock-renewal cadence), one pipelined read for all of them. A
request counts only for the attempt whose token it names, so a late or stale one can never
cancel a later run of the job. While the server cannot be reached, the watcher waits for the
worker's reachability probe and subscribes again as soon as it answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from redis.asyncio import Redis
from redis.asyncio.client import PubSub

from .connection import TRANSIENT_ERRORS
from .errors import InvalidJobOptions
from .job import JobState
from .keys import QueueKeys
from .reachability import RECONNECT_CAP, UNREACHABLE_ERRORS, Reachability

log = logging.getLogger("corral.worker")


@dataclass(frozen=True, slots=True)
class CancelResult:
    """The outcome of ``Queue.cancel_job``: the state the job was in, and whether it is failed
    already (``done``) or its worker was asked to stop it (``done`` False, state active)."""

    job_id: str
    state: JobState
    done: bool


def validate_who(by: object) -> str:
    """Who cancels: 1-200 printable characters, shown in the reason "cancelled by <who>"."""
    if not isinstance(by, str) or not 0 < len(by) <= 200 or not by.isprintable():
        raise InvalidJobOptions(f"by={by!r} is invalid: expected 1-200 printable characters")
    return by


class CancelWatcher:
    """Tells the worker which of its running jobs an operator cancelled."""

    def __init__(
        self,
        client: Redis,
        keys: QueueKeys,
        held: Callable[[], Sequence[tuple[str, str]]],
        on_cancel: Callable[[str, str], None],
        recheck: float,
        reach: Reachability,
    ) -> None:
        self._client = client
        self._keys = keys
        self._held = held
        self._on_cancel = on_cancel
        self._recheck = recheck
        self._reach = reach

    async def check(self, only: Iterable[str] | None = None) -> None:
        """Read the cancel requests of the held jobs (or of those in ``only``) in one round
        trip and report each that names the token the job is held with."""
        wanted = None if only is None else set(only)
        held = [(i, t) for i, t in self._held() if wanted is None or i in wanted]
        if not held:
            return
        async with self._client.pipeline(transaction=False) as pipe:
            for job_id, _ in held:
                pipe.hmget(self._keys.job(job_id), "cancel_token", "cancelled_by")
            replies = await pipe.execute()
        for (job_id, token), (cancel_token, by) in zip(held, replies, strict=True):
            if cancel_token is not None and cancel_token == token:
                self._on_cancel(job_id, by or "unknown")

    async def run(self) -> None:
        """Listen until cancelled; after a connection error, subscribe again once the server
        is reachable (other errors: with backoff)."""
        delay = 0.0
        while True:
            await self._reach.wait_up()  # while it is unreachable, only the probe tries it
            pubsub = self._client.pubsub()
            try:
                await pubsub.subscribe(self._keys.cancel_channel)
                await self.check()  # anything published while we were not subscribed
                delay = 0.0
                await self._listen(pubsub)
            except UNREACHABLE_ERRORS as exc:
                log.debug("cancel watcher: %s; resubscribing once Redis is reachable", exc)
                self._reach.lost(exc)
            except Exception as exc:  # never let cancellation die quietly: retry
                if delay == 0.0 and not isinstance(exc, TRANSIENT_ERRORS):
                    log.warning("cancel watcher of queue %s: %s; retrying", self._keys.queue, exc)
                delay = min(max(delay * 2, 0.1), RECONNECT_CAP)
                log.debug("cancel watcher: %s; resubscribing in %.1f s", exc, delay)
                await asyncio.sleep(delay)
            finally:
                with contextlib.suppress(*TRANSIENT_ERRORS):
                    await pubsub.aclose()  # type: ignore[no-untyped-call, unused-ignore]

    async def _listen(self, pubsub: PubSub) -> None:
        last_check = time.monotonic()
        while True:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
            if message is not None and message.get("type") == "message":
                await self.check([str(message["data"])])
            if time.monotonic() - last_check >= self._recheck:
                await self.check()
                last_check = time.monotonic()
