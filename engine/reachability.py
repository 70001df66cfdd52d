"""Whether a worker's server can be used, and the one task that tries it while it cannot.

When a call of one of the worker's loops (fetch, lock renewal, stalled check, cancel watcher,
a job's completion) fails because the server cannot be reached, or is a replica now, the loop
reports it (``lost``) and every loop waits (``wait_up``) instead of retrying on its own. One
probe task tries the server meanwhile: one ``ROLE`` (a primary answers ``master``), one
connection attempt (see ``connection.probe_client``), the
tries ``FIRST_DELAY`` doubling to ``RECONNECT_CAP`` apart, or every ``hurry`` seconds while a
held lock can still be saved. Its first answer wakes every loop at once. It logs the changes
of state ("lost Redis", "connection to Redis is back") once, and "Redis not reachable" at most
once per ``STILL_DOWN_EVERY``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field

from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from .connection import NOT_PRIMARY_ERRORS, describe_error, probe_client

log = logging.getLogger("corral.worker")

RECONNECT_CAP = 20.0  # seconds between reconnect attempts, at most
FIRST_DELAY = 0.1  # seconds from a failed call to the first probe
STILL_DOWN_EVERY = 30.0  # seconds between "Redis not reachable" lines while it is not

UNREACHABLE_ERRORS: tuple[type[Exception], ...] = (
    RedisConnectionError,
    RedisTimeoutError,
    *NOT_PRIMARY_ERRORS,
)
"""Errors that mean the server cannot be used now: the connection failed or went silent, or
leads to a server still loading its data (redis-py's ``BusyLoadingError`` is a
``ConnectionError``), or to a replica (``READONLY``, ``UNBLOCKED``, ``MASTERDOWN``: no write
until a failover moves the address or the server is promoted; the probe asks ``ROLE``). A server
that answers and refuses otherwise (out of memory, a failed save) would pass a probe at once, so
the loop that met such an error retries by itself, with its own backoff."""


@dataclass(slots=True)
class ReconnectDelay:
    """Exponential reconnect delay: ``FIRST_DELAY`` doubling to ``RECONNECT_CAP``."""

    delay: float = 0.0
    failing: bool = field(default=False)

    def next(self) -> float:
        self.delay = min(max(self.delay * 2, FIRST_DELAY), RECONNECT_CAP)
        return self.delay

    def reset(self) -> None:
        self.delay = 0.0


class Reachability:
    """Shared by a worker's loops: up until a call reports the server ``lost``, then down
    until a probe gets an answer. Only the probe task calls the server while it is down."""

    def __init__(self, client: Redis, who: str) -> None:
        self._prober = probe_client(client)
        self._who = who
        self._up = asyncio.Event()
        self._up.set()
        self._wake = asyncio.Event()
        self._delay = ReconnectDelay()
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._error: BaseException | None = None
        self._said_at: float | None = None  # when "not reachable" or "lost" was last logged
        self._said_lost = False  # "lost Redis" was logged for this outage: say "back" too
        self._hurry_until = 0.0
        self._hurry_every = RECONNECT_CAP

    @property
    def up(self) -> bool:
        """False from a reported loss until a probe gets an answer."""
        return self._up.is_set()

    def lost(self, error: BaseException, *, starting: bool = False) -> None:
        """A call failed with ``error``: the server counts as unreachable until a probe
        answers (a report while it does already changes nothing). ``starting``: the worker
        has not reached its server yet; it says "not reachable" (once per
        ``STILL_DOWN_EVERY``) instead of "lost"."""
        if self._closed or not self._up.is_set():
            return
        self._up.clear()
        self._error = error
        now = time.monotonic()
        if not starting:
            self._said_at, self._said_lost = now, True
            log.warning("%s: lost Redis (%s); reconnecting", self._who, describe_error(error))
        elif self._said_at is None or now - self._said_at >= STILL_DOWN_EVERY:
            self._said_at = now
            log.warning("%s: Redis not reachable (%s); retrying", self._who, describe_error(error))
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._probe_until_up(now))

    def answered(self) -> None:
        """A loop's call succeeded: the next outage starts with short pauses again. Until one
        does, the pauses go on doubling across outages, so that a server that answers the
        probe but fails the loops' calls is not met with a fast loop."""
        if self._up.is_set():
            self._delay.reset()

    async def wait_up(self) -> None:
        """Return once the server is reachable (at once if it is not known to be down)."""
        await self._up.wait()

    def hurry(self, until: float, every: float) -> None:
        """Probe at least every ``every`` s until ``until`` (``time.monotonic()``): a held lock
        lives until then, and is saved if a renewal reaches the server before it."""
        if self._up.is_set() or until <= time.monotonic():
            return
        self._hurry_until = max(self._hurry_until, until)
        self._hurry_every = every
        self._wake.set()

    async def _probe_until_up(self, since: float) -> None:
        """Try the server until it answers, each try ``_delay`` after the last began."""
        while True:
            since = await self._pause_from(since, self._delay.next())
            try:
                role = await self._prober.execute_command("ROLE")  # type: ignore[no-untyped-call]
                if not _is_primary(role):
                    self._remind()  # a replica still: the loops' writes would be refused
                    continue
            except UNREACHABLE_ERRORS as exc:
                self._error = exc
                self._remind()
                continue
            except Exception as exc:  # it answered (an ACL that refuses ROLE, say): usable
                log.debug("%s: probe answered with %s", self._who, exc)
            finally:  # keep no idle connection of its own between outages
                with contextlib.suppress(Exception):
                    await self._prober.connection_pool.disconnect()
            self._hurry_until = 0.0
            if self._said_lost:
                log.info("%s: connection to Redis is back", self._who)
            self._said_lost = False
            self._up.set()
            return

    async def _pause_from(self, began: float, delay: float) -> float:
        """Sleep until ``delay`` s after ``began``, or ``every`` s after it while hurried
        (``hurry`` wakes it early); return when it woke."""
        while True:
            now = time.monotonic()
            left = began + delay - now
            if now < self._hurry_until:
                left = min(left, began + self._hurry_every - now)
            if left <= 0:
                return now
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), left)

    def _remind(self) -> None:
        now = time.monotonic()
        if self._said_at is None or now - self._said_at >= STILL_DOWN_EVERY:
            self._said_at = now
            error = describe_error(self._error) if self._error is not None else "no answer"
            log.warning("%s: Redis not reachable (%s); retrying", self._who, error)

    async def close(self) -> None:
        """Stop probing and close the probe's connection. Loops still waiting keep waiting:
        their owners cancel them (the worker is shutting down)."""
        self._closed = True
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(Exception):
            await self._prober.aclose()


def _is_primary(role: object) -> bool:
    """Whether a ``ROLE`` reply is a primary's (``master``, as bytes or text)."""
    first = role[0] if isinstance(role, list | tuple) and role else None
    return first in ("master", b"master")
