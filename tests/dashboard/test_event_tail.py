"""The events tail under a burst: every entry counted (raw, undecoded), the newest and the stalled
ones kept and decoded; a tail that fell behind reads more at once; the garbage collector paused
only while a busy round reads."""

from __future__ import annotations

import gc
import socket
from collections.abc import Mapping

import pytest
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

from dashboard.corral_backend import CorralBackend
from dashboard.event_tail import BATCH, EventTail
from dashboard.model import Event
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


class Recording(CorralBackend):
    """The Corral backend, noting what the tail hands it: the tallies, each entry it decoded,
    and whether the cyclic garbage collector was running while it did."""

    def __init__(self) -> None:
        super().__init__()
        self.tallies: list[dict[str, int]] = []
        self.decoded: list[str] = []
        self.collector_on: list[bool] = []

    def tally_events(self, queue: str, counts: Mapping[str, int]) -> None:
        self.tallies.append(dict(counts))

    def parse_event(self, queue: str, entry_id: str, fields: Mapping[str, str]) -> Event:
        self.decoded.append(entry_id)
        self.collector_on.append(gc.isenabled())
        return super().parse_event(queue, entry_id, fields)


async def _add(client: aioredis.Redis, stream: str, count: int) -> None:
    async with client.pipeline(transaction=False) as pipe:
        for n in range(count):
            pipe.xadd(stream, {"event": "added", "job_id": str(n)})
        await pipe.execute()


async def test_entries_are_counted_raw_and_only_the_kept_ones_decoded(
    redis_url: str, queue_name: str
) -> None:
    backend = Recording()
    stream = QueueKeys(queue_name).events
    async with aioredis.Redis.from_url(redis_url, decode_responses=True) as client:
        tail = EventTail(backend, block_ms=200, keep=5)
        await tail.read(client, [queue_name])
        await _add(client, stream, 50)
        await client.xadd(stream, {"event": "completed", "job_id": "x", "note": b"\xffok"})
        await client.xadd(stream, {"note": "no event field"})
        found = await tail.read(client, [queue_name])
    assert found.read == 52 and not found.behind
    assert backend.tallies == [{"added": 50, "completed": 1, "?": 1}]  # names as text
    assert len(backend.decoded) == 5  # the other 47 entries never became text
    assert [e.event for e in found.events] == ["added", "added", "added", "completed", "?"]
    assert found.events[3].get("note") == "\udcffok"  # read back as its own bytes
    assert tail.last_ids[queue_name] == found.events[-1].entry_id


async def test_a_tail_that_fell_behind_reads_rounds_of_a_batch_until_it_caught_up(
    redis_url: str, queue_name: str
) -> None:
    """However long the backlog, a round reads at most ``BATCH`` entries (its reply's memory is
    bounded) and says it is behind until the last one read everything."""
    stream = QueueKeys(queue_name).events
    backlog = BATCH * 4 + 123
    async with aioredis.Redis.from_url(redis_url, decode_responses=True) as client:
        tail = EventTail(CorralBackend(), block_ms=200, keep=10)
        await tail.read(client, [queue_name])
        await _add(client, stream, backlog)
        rounds = [await tail.read(client, [queue_name]) for _ in range(5)]
        caught_up = await tail.read(client, [queue_name])
    assert [r.read for r in rounds] == [BATCH] * 4 + [123]
    assert [r.behind for r in rounds] == [True] * 4 + [False]
    assert not any(r.gaps for r in rounds)
    assert (caught_up.read, caught_up.behind) == (0, False)


async def test_the_collector_pauses_only_while_a_busy_round_reads(
    redis_url: str, queue_name: str
) -> None:
    backend = Recording()
    stream = QueueKeys(queue_name).events
    assert gc.isenabled()
    async with aioredis.Redis.from_url(redis_url, decode_responses=True) as client:
        tail = EventTail(backend, block_ms=50, keep=1)
        await tail.read(client, [queue_name])
        await _add(client, stream, 3)
        await tail.read(client, [queue_name])  # the first entries after a quiet round
        await _add(client, stream, 3)
        await tail.read(client, [queue_name])  # busy: the round before read entries
        assert gc.isenabled()
        assert (await tail.read(client, [queue_name])).read == 0  # busy still, found nothing
        await _add(client, stream, 3)
        await tail.read(client, [queue_name])  # quiet again
        gc.disable()  # the program's own choice is left as it was
        try:
            await _add(client, stream, 3)
            await tail.read(client, [queue_name])
            assert not gc.isenabled()
        finally:
            gc.enable()
    assert backend.collector_on == [True, False, True, False]  # the last: off by the program
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: nothing listens there
    dead = aioredis.Redis(
        host="127.0.0.1", port=port, socket_connect_timeout=1, retry=Retry(NoBackoff(), 0)
    )
    with pytest.raises(RedisConnectionError):  # a busy round that failed
        await tail.read(dead, [queue_name])
    assert gc.isenabled()
    await dead.aclose()
