"""Failover tests' shared parts: a client of one server, a replica set up and caught up, the
completed job ids on a server, and a producer that adds short jobs until held."""

from __future__ import annotations

import asyncio
from typing import Any

import redis.asyncio as aioredis

from engine import Queue, QueueKeys
from support.server import FaultServer
from support.workers import wait_until

HOST = "127.0.0.1"
RESUME_WITHIN = 5.0 + 1.0
"""R9: processing resumes within 5 s of a failover (the plan), plus the scheduling slack."""


def client_of(server: FaultServer) -> aioredis.Redis:
    """A client of ``server`` itself (not through a proxy)."""
    return aioredis.Redis(host=HOST, port=server.port, decode_responses=True)


async def caught_up(primary: aioredis.Redis, replica: aioredis.Redis) -> bool:
    """The replica is linked and has every write the primary made."""
    mine: dict[str, Any] = await primary.info("replication")
    theirs: dict[str, Any] = await replica.info("replication")
    return theirs.get("master_link_status") == "up" and int(
        theirs.get("slave_repl_offset", -1)
    ) >= int(mine["master_repl_offset"])


async def replicate(replica: aioredis.Redis, primary: aioredis.Redis, port: int) -> None:
    """Make ``replica`` replicate the server at ``port`` (``primary``, or a proxy to it) and
    wait until it has caught up."""
    for server in (primary, replica):  # either may serve a full sync: start it at once
        await server.config_set("repl-diskless-sync-delay", 0)
    await replica.replicaof(HOST, port)
    await wait_until(lambda: caught_up(primary, replica), within=20)


async def completed_ids(client: aioredis.Redis, queue: str) -> set[str]:
    """The ids in ``queue``'s completed set on that server."""
    members: list[Any] = await client.zrange(QueueKeys(queue).completed, 0, -1)
    return {str(member) for member in members}


class Producer:
    """Adds a short job every ``every`` s while running; ``hold()`` stops it between adds."""

    def __init__(self, queue: Queue, every: float = 0.02) -> None:
        self.added: list[str] = []
        self.errors: list[BaseException] = []
        self._queue = queue
        self._every = every
        self._go = asyncio.Event()
        self._busy = asyncio.Lock()
        self._stopped = False
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._go.set()
        self._task = asyncio.create_task(self._run())

    def resume(self) -> None:
        self._go.set()

    async def hold(self) -> None:
        """Stop adding; returns once the add in flight (if any) is done."""
        self._go.clear()
        async with self._busy:
            pass

    async def stop(self) -> None:
        self._stopped = True
        self._go.set()
        if self._task is not None:
            await asyncio.wait_for(self._task, 30)

    async def _run(self) -> None:
        n = 0
        while not self._stopped:
            await self._go.wait()
            async with self._busy:
                if self._stopped or not self._go.is_set():
                    continue
                try:
                    job = await self._queue.add("produced", {"sleep": 0.02, "n": n})
                except Exception as exc:  # the test asserts there is none
                    self.errors.append(exc)
                else:
                    self.added.append(job.id)
            n += 1
            await asyncio.sleep(self._every)
