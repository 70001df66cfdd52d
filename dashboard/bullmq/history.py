"""Jobs finished per minute from BullMQ's metrics (kept when workers run with ``metrics``), placed
on the minutes they belong to, for the overview's last-hour chart.

BullMQ books a minute late: the first job a worker finishes in a new minute pushes the count of
the minute of the previous flush (``prevTS``) onto the head of ``metrics:<kind>:data``, then a
zero for each minute skipped since. So index 0 is the minute before the last flush's, index i
the i-th before that; the jobs finished since that flush (``count - prevCount``) belong to the
flush's own minute, booked on the list only later (BULLMQ-LAYOUT.md §9).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from redis.asyncio import Redis

from dashboard.bullmq.keys import BullKeys
from dashboard.bullmq.replies import as_int, server_ms
from dashboard.model import MinuteHistory

MINUTE_MS = 60_000
KINDS = ("completed", "failed")


def minute_counts(
    meta: Sequence[Any], data: Sequence[Any], end_minute_ms: int, minutes: int
) -> tuple[int, ...]:
    """Jobs per minute, oldest first, over the ``minutes`` minutes ending with the one starting
    at ``end_minute_ms``, from the metrics hash's ``count``, ``prevTS``, ``prevCount`` and the
    data list (newest first); a minute nothing records counts 0."""
    count, prev_ts, prev_count = (as_int(value) for value in meta)
    booked: dict[int, int] = {}
    if count is not None and prev_ts is not None:
        flushed = prev_ts - prev_ts % MINUTE_MS
        booked[flushed] = max(count - (prev_count or 0), 0)
        for index, point in enumerate(data):
            booked[flushed - (index + 1) * MINUTE_MS] = as_int(point) or 0
    first = end_minute_ms - (minutes - 1) * MINUTE_MS
    return tuple(booked.get(first + i * MINUTE_MS, 0) for i in range(minutes))


async def read_minute_history(
    client: Redis, prefix: str, queues: Sequence[str], minutes: int
) -> MinuteHistory:
    """Completed and failed jobs per minute of each queue over the last ``minutes`` minutes, the
    current one included (server clock): per queue and kind one HMGET and one bounded LRANGE,
    all in one pipeline."""
    minutes = max(minutes, 1)
    async with client.pipeline(transaction=False) as pipe:
        pipe.time()
        for queue in queues:
            keys = BullKeys(prefix, queue)
            for kind in KINDS:
                pipe.hmget(keys.metrics(kind), ["count", "prevTS", "prevCount"])
                pipe.lrange(keys.metrics_data(kind), 0, minutes - 1)
        now, *replies = await pipe.execute(raise_on_error=False)
    for reply in replies:
        if isinstance(reply, Exception):
            raise reply
    now_ms = server_ms(now)
    end = now_ms - now_ms % MINUTE_MS
    counts: dict[str, tuple[tuple[int, int], ...]] = {}
    for index, queue in enumerate(queues):
        done_meta, done_data, lost_meta, lost_data = replies[index * 4 : (index + 1) * 4]
        done = minute_counts(done_meta, done_data, end, minutes)
        lost = minute_counts(lost_meta, lost_data, end, minutes)
        counts[queue] = tuple(zip(done, lost, strict=True))
    return MinuteHistory(end_minute_ms=end, counts=counts)
