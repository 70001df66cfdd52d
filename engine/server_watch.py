"""Checking the server again after a reconnect: an unsafe eviction policy is refused again
(the worker takes no jobs until it is fixed), and a server that came back without the queue's
data (a restart without persistence, a failover to an empty replica) is reported once, loudly.

The check runs after every new connection (the client's ``redis_connect_func`` hook marks the
watch ``stale``), so a reconnect that redis-py's own retries hide is noticed too. A reset is
recognised by the server's ``run_id`` changing while the queue's meta hash, which the first
add creates with its ``created`` time, is gone or was created anew.
"""

from __future__ import annotations

import logging

from redis.asyncio import Redis
from redis.asyncio.connection import AbstractConnection

from .connection import ServerInfo, check_server
from .errors import UnsafeServerConfig
from .keys import QueueKeys

log = logging.getLogger("corral.server")


class ServerWatch:
    """What a long-running client knows about its server, and what changed since."""

    def __init__(
        self,
        keys: QueueKeys,
        who: str,
        *,
        allow_unsafe_eviction: bool = False,
        log_refusals: bool = True,
    ) -> None:
        self._log_refusals = log_refusals  # False where the caller raises the refusal instead
        self._client: Redis | None = None
        self._keys = keys
        self._who = who
        self._allow_unsafe = allow_unsafe_eviction
        self._run_id: str | None = None
        self._created: str | None = None
        self.refusal: str | None = None
        """Why no job may be taken now (an unsafe server config found on a reconnect)."""
        self.resets = 0
        """How many times the server came back without this queue's data."""
        self.stale = False
        """A connection was (re)made since the last check."""

    def attach(self, client: Redis) -> None:
        """The client the checks use."""
        self._client = client

    @property
    def client(self) -> Redis:
        if self._client is None:
            raise RuntimeError("ServerWatch.attach() was not called")
        return self._client

    async def on_connect(self, connection: AbstractConnection) -> None:
        """``redis_connect_func`` for the client's pool: do the usual handshake, and mark the
        watch stale so the next check looks at the server again.

        The handshake sends no health-check PING first: redis-py runs this hook from inside
        a failed PING's retry too, so a PING here would reconnect from within itself without
        end against a port that accepts connections and drops them at once, as a proxy in
        front of a dead server does (a worker died of ``RecursionError``, an add hung)."""
        handshake = getattr(connection, "on_connect_check_health", None)
        if handshake is not None:  # the redis-py versions that have it
            await handshake(check_health=False)
        else:
            await connection.on_connect()
        self.stale = True

    def connected(self) -> None:
        """A connection of the engine's own (``engine.multiplex``) was made: check again."""
        self.stale = True

    async def start(self) -> ServerInfo:
        """The first check: raises ``UnsafeServerConfig`` for an unsafe server."""
        info = await check_server(self.client, allow_unsafe_eviction=self._allow_unsafe)
        self.stale = False
        self._run_id = info.run_id
        await self.remember_queue()
        return info

    async def remember_queue(self) -> None:
        """Note when the queue's data was created, if it exists yet (cheap: one HGET, and only
        until the queue exists)."""
        if self._created is None:
            self._created = await self._meta_created()

    async def _meta_created(self) -> str | None:
        created = await self.client.hget(self._keys.meta, "created")
        return None if created is None else str(created)

    async def recheck(self) -> None:
        """After a reconnect: refuse an unsafe server (``refusal``), and report a dataset reset
        once. Connection errors propagate (the caller retries)."""
        self.stale = False
        try:
            info = await check_server(self.client, allow_unsafe_eviction=self._allow_unsafe)
        except UnsafeServerConfig as exc:
            if self.refusal is None and self._log_refusals:
                log.error("%s: not taking jobs: %s", self._who, exc)
            self.refusal = str(exc)
            return
        if self.refusal is not None and self._log_refusals:
            log.warning("%s: the server's configuration is safe again; taking jobs", self._who)
        self.refusal = None
        if info.run_id == self._run_id:
            return
        created = await self._meta_created()
        if self._created is not None and created != self._created:
            self.resets += 1
            log.error(
                "%s: Redis dataset was reset: the server restarted (run_id %s -> %s) without "
                "the data of queue %r; jobs added before the restart are lost (run Redis with "
                "AOF persistence to keep them)",
                self._who,
                self._run_id,
                info.run_id,
                self._keys.queue,
            )
        self._run_id = info.run_id
        self._created = created
