"""The events tail under a burst: every entry counted, the newest and the stalled ones kept."""

from __future__ import annotations

import redis.asyncio as aioredis

from dashboard.corral_backend import CorralBackend
from dashboard.event_tail import EventTail
from engine.keys import QueueKeys


async def test_a_burst_keeps_the_newest_entries_and_every_stalled_one(
    redis_url: str, queue_name: str
) -> None:
    backend = CorralBackend()
    stream = QueueKeys(queue_name).events
    async with aioredis.Redis.from_url(redis_url, decode_responses=True) as client:
        await client.xadd(stream, {"event": "added", "job_id": "seed"})
        tail = EventTail(backend, block_ms=200, keep=10)
        await tail.read(client, [queue_name])  # starts after the entry already there
        async with client.pipeline(transaction=False) as pipe:
            for n in range(300):
                event = "stalled" if n == 7 else "added"
                pipe.xadd(stream, {"event": event, "job_id": str(n), "prev": "active"})
            await pipe.execute()
        found = await tail.read(client, [queue_name])
    assert found.read == 300 and found.gaps == ()
    assert [e.job_id for e in found.events] == ["7", *map(str, range(290, 300))]
    assert found.events[0].event == "stalled" and found.events[0].get("prev") == "active"
