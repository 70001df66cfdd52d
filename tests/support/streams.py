"""Reading a queue's events stream in tests, typed."""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis

from engine.keys import QueueKeys


async def stream_events(
    redis: aioredis.Redis, queue: str, name: str | None = None
) -> list[dict[str, str]]:
    """Every entry of ``queue``'s events stream (only ``name`` events if given), oldest first;
    each entry's stream id is under ``_id``."""
    entries: Any = await redis.xrange(QueueKeys(queue).events)
    out = []
    for entry_id, fields in entries:
        if name is None or fields.get("event") == name:
            out.append({**{str(k): str(v) for k, v in fields.items()}, "_id": str(entry_id)})
    return out
