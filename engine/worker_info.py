"""Live workers of a queue, read from the heartbeat record each worker writes (``LockRenewer.
beat``): a hash per worker that expires when the worker stops beating, and the ``workers``
zset that lists their ids."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from .keys import QueueKeys


@dataclass(frozen=True, slots=True)
class WorkerInfo:
    """One live worker, as of its last heartbeat. Times are ms on the worker's own clock."""

    id: str
    queue: str
    host: str
    pid: int
    concurrency: int
    in_flight: int
    started: int
    last_beat: int
    expires: int
    """When the heartbeat runs out unless the worker beats again (the ``workers`` score)."""
    restarts: int = 0
    """How often its supervisor (``corral worker --supervise``) restarted it before this run."""


def _int(fields: dict[str, Any], name: str) -> int:
    try:
        return int(fields.get(name) or 0)
    except ValueError:
        return 0


async def read_workers(client: Redis, keys: QueueKeys) -> list[WorkerInfo]:
    """The workers whose heartbeat has not expired, oldest first (two round trips)."""
    members: list[Any] = await client.zrange(keys.workers, 0, -1, withscores=True)
    async with client.pipeline(transaction=False) as pipe:
        for worker_id, _score in members:
            pipe.hgetall(keys.worker(str(worker_id)))
        hashes: list[dict[str, Any]] = await pipe.execute()
    live = [
        WorkerInfo(
            id=str(worker_id),
            queue=keys.queue,
            host=str(fields.get("host", "")),
            pid=_int(fields, "pid"),
            concurrency=_int(fields, "concurrency"),
            in_flight=_int(fields, "in_flight"),
            started=_int(fields, "started"),
            last_beat=_int(fields, "last_beat"),
            expires=int(score),
            restarts=_int(fields, "restarts"),
        )
        for (worker_id, score), fields in zip(members, hashes, strict=True)
        if fields  # the hash expires with the heartbeat (server clock): gone means dead
    ]
    return sorted(live, key=lambda w: (w.started, w.id))
