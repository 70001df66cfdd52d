"""LockRenewer: one timer renews the locks of every job a worker holds, and writes the
worker's heartbeat record that ``Queue.get_workers`` and the dashboard read. While the server
cannot be reached it waits for the worker's reachability probe, hurrying it while a held lock
can still be saved."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Callable, Sequence

from redis.asyncio import Redis

from . import commands
from .connection import TRANSIENT_ERRORS, describe_error
from .keys import QueueKeys
from .reachability import RECONNECT_CAP, UNREACHABLE_ERRORS, Reachability
from .scripts import ScriptRegistry

log = logging.getLogger("corral.worker")


class LockRenewer:
    """Every ``lock_ms / 2``: extend all held locks in one script call, then beat."""

    def __init__(
        self,
        scripts: ScriptRegistry,
        keys: QueueKeys,
        lock_ms: int,
        worker_id: str,
        concurrency: int,
        held: Callable[[], Sequence[tuple[str, str]]],
        on_lost: Callable[[str], None],
        reach: Reachability,
        *,
        restarts: int = 0,
    ) -> None:
        self._scripts = scripts
        self._keys = keys
        self._lock_ms = lock_ms
        self._worker_id = worker_id
        self._concurrency = concurrency
        self._held = held
        self._on_lost = on_lost
        self._reach = reach
        self._started: int | None = None  # server clock of the first heartbeat
        self._restarts = restarts
        self._suspects: set[str] = set()  # locks missing at the last renewal
        self.last_beat_ms: int | None = None  # local clock of the last heartbeat written

    async def renew_once(self) -> None:
        """Extend every held lock; report the ones that were lost.

        A job whose completion ran on the server while the renewal was on its way has no lock
        any more, yet is still held here for a moment: a lock is reported lost only when it is
        missing at two renewals in a row while the job is still held, so fast jobs do not
        flood the log with false alarms (the result of a job whose lock is really gone is
        fenced off by its completion script either way)."""
        held = list(self._held())
        if not held:
            self._suspects = set()
            return
        missing = await commands.extend_locks(self._scripts, self._keys, self._lock_ms, held)
        still_held = {job_id for job_id, _ in self._held()}
        missing_now = {job_id for job_id in missing if job_id in still_held}
        for job_id in missing_now & self._suspects:
            self._on_lost(job_id)
        self._suspects = missing_now - self._suspects

    async def beat(self, client: Redis, in_flight: int) -> None:
        """Write this worker's heartbeat hash (expires when the worker stops beating)."""
        key = self._keys.worker(self._worker_id)
        # scored and stamped on the server's clock: a worker whose host clock is wrong must
        # neither look dead nor sweep the live entries of other workers away
        seconds, micros = await client.time()
        now = int(seconds) * 1000 + int(micros) // 1000
        if self._started is None:
            self._started = now
        async with client.pipeline(transaction=True) as pipe:
            pipe.hset(
                key,
                mapping={
                    "host": socket.gethostname(),
                    "pid": os.getpid(),
                    "concurrency": self._concurrency,
                    "in_flight": in_flight,
                    "started": self._started,
                    "last_beat": now,
                    "restarts": self._restarts,
                },
            )
            ttl = max(self._lock_ms * 2, 5_000)
            pipe.pexpire(key, ttl)
            pipe.zadd(self._keys.workers, {self._worker_id: now + ttl})  # scored by expiry
            pipe.zremrangebyscore(self._keys.workers, "-inf", now - 60_000)
            await pipe.execute()
        self.last_beat_ms = int(time.time() * 1000)

    async def run(self, client: Redis, in_flight: Callable[[], int]) -> None:
        """Renew and beat forever (until cancelled).

        While the server cannot be reached, renewal waits for the worker's reachability
        probe and renews as soon as it answers. While a held lock may still be alive (less
        than ``lock_ms`` since the last renewal began) it has the probe try every
        ``min(interval / 4, 1 s)``, to save the lock soon after the server is back; after
        that, or with no job held, only the heartbeat is at stake and the probe keeps its own
        pauses (doubling to ``RECONNECT_CAP``). A server that answers and refuses (out of
        memory, a failed save) is retried by renewal itself, on the same schedule."""
        interval = self._lock_ms / 2000
        retry = min(interval / 4, 1.0)
        delay = 0.0
        failing = False
        renewed = time.monotonic()  # when the last good renewal began: locks live until +ttl
        while True:
            if not self._reach.up:  # unreachable: the probe tries it, renewal waits
                alive_until = renewed + self._lock_ms / 1000  # the held locks, at the latest
                if self._held():
                    self._reach.hurry(alive_until, retry)
                await self._reach.wait_up()
            started = time.monotonic()
            try:
                await self.renew_once()
                await self.beat(client, in_flight())
                if failing:
                    log.info("lock renewal works again")
                failing = False
                delay = 0.0
                renewed = started
                self._reach.answered()
                _stop_if_cancel_requested()
                # fixed rate: slow round trips must not stretch the period towards the lock TTL
                await asyncio.sleep(max(interval - (time.monotonic() - started), 0.0))
            except TRANSIENT_ERRORS as exc:
                if not failing:
                    log.warning("lock renewal failed (%s); retrying", describe_error(exc))
                failing = True
                if isinstance(exc, UNREACHABLE_ERRORS):
                    self._reach.lost(exc)
                    continue  # and wait for the probe, above
                if self._held() and time.monotonic() - renewed < self._lock_ms / 1000:
                    delay = retry
                else:
                    delay = min(max(delay * 2, retry), RECONNECT_CAP)
                await asyncio.sleep(delay)


def _stop_if_cancel_requested() -> None:
    """Raise ``CancelledError`` if this task was asked to stop and something swallowed it
    (Python 3.11's ``asyncio.wait_for``, which redis-py wraps around socket writes, returns the
    result of a write that completed as the cancellation came, dropping it): a loop that
    carries on would keep the worker from shutting down."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
