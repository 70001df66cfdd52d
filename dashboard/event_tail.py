"""Tails the events streams of many queues with one blocking XREAD from the last id seen.

Each round first asks XINFO STREAM of every stream in the same pipeline. A stream met for the
first time starts at its last entry. A stream holds fewer entries after the last id seen than were
added since (``entries-added``) when trimming removed some before they were read: that is a gap.

A busy engine writes thousands of entries a second, so the XREAD reply is taken as the server
sent it, undecoded (bytes, no per-entry dicts): each entry's ``event`` name is counted as bytes
(the backend is told how many entries of each kind it read: ``tally_events``), and only the
newest ``keep`` entries of each stream and the ``notable`` ones (a stalled job, a breaker change)
are decoded into ``Event``s. A round reads at most ``BATCH`` entries of each stream, however far
behind the tail is: a round that leaves entries unread (its read was full, or XINFO counted more
than it read) says so (``TailRound.behind``), and the caller reads the next one at once.
"""

from __future__ import annotations

import gc
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, cast

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.client import NEVER_DECODE, CaseInsensitiveDict

from dashboard.backend import Backend
from dashboard.model import Event
from dashboard.sanitize import from_redis, to_redis

BATCH = 1_000
"""Entries read per stream and round, also while catching up on a backlog (in back-to-back
rounds, a few ms each: a 10,000-entry backlog, as long as BullMQ's trimmed stream, is read in
well under a second). A reply is about 500 bytes of small objects per entry, freed after the
round. Under the soak's load a memory profile of the dashboard found most of what it took
after start-up in allocator arenas first taken while a large round was read and never given
back: objects that live longer (render caches and the like) made meanwhile keep an arena once
its reply is freed. Small rounds fit in the space that is already there; rounds of 500 cost a
BullMQ dashboard at 20,000 entries/s about 40 % more CPU than these (each round asks XINFO
too)."""
NOTABLE = frozenset({"stalled", "breaker"})
"""Events kept however many others came after them in the same round."""
_EVENT = b"event"
_UNKNOWN = b"?"


def _raw(response: Any, **options: Any) -> Any:
    return response


def _event_name(fields: Sequence[bytes] | None) -> bytes:
    """The ``event`` field of a flat ``[field, value, ...]`` list (both engines write it first)."""
    if not fields:
        return _UNKNOWN
    if fields[0] == _EVENT:
        return fields[1]
    for index in range(2, len(fields) - 1, 2):
        if fields[index] == _EVENT:
            return fields[index + 1]
    return _UNKNOWN


def _id_tuple(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms or 0), int(seq or 0)


@dataclass(frozen=True, slots=True)
class TailRound:
    """What one round read: the events kept (in stream order), the queues whose streams had a
    gap, how many entries it read in all, and whether entries were left unread (read again at
    once: the writers are ahead)."""

    events: tuple[Event, ...]
    gaps: tuple[str, ...]
    read: int = 0
    behind: bool = False


class EventTail:
    """Remembers the last id read per queue stream, across reconnects."""

    def __init__(
        self,
        backend: Backend,
        block_ms: int = 1_000,
        *,
        keep: int | None = None,
        notable: Iterable[str] = NOTABLE,
    ) -> None:
        self.backend = backend
        self.block_ms = block_ms
        self.keep = keep
        """Newest entries of each stream and round made into ``Event``s (None: all of them)."""
        self.notable = frozenset(notable)
        self._notable_raw = frozenset(to_redis(name) for name in self.notable)
        self._callbacks: tuple[Any, Any] | None = None
        self.last_ids: dict[str, str] = {}
        self._added: dict[str, int] = {}
        """``entries-added`` of each stream as of its last id seen."""
        self._busy = False

    def forget(self, queues: Sequence[str]) -> None:
        """Stop following queues that no longer exist."""
        for queue in queues:
            self.last_ids.pop(queue, None)
            self._added.pop(queue, None)

    async def read(self, client: Redis, queues: Sequence[str]) -> TailRound:
        """One round: XINFO every stream, then XREAD BLOCK the ones already followed.

        While the streams are busy (the last round read entries) the cyclic garbage collector
        is paused for the round: a reply of hundreds of entries a stream is as many lists, which
        would otherwise trigger collections while it is being built, and its lists, still alive
        then, would be counted as long-lived objects, starting a full collection of the whole
        program every second or two (a fifth to half of a busy dashboard's CPU in the BullMQ
        benchmark). The reply is freed before the collector resumes, so it is never collected
        at all; a quiet round (which may block for ``block_ms``) leaves the collector alone, and
        a program that turned the collector off keeps it off.
        """
        if not self._busy or not gc.isenabled():
            return await self._read(client, queues)
        gc.disable()
        try:
            return await self._read(client, queues)  # its frame, with the reply, is gone here
        finally:
            gc.enable()

    async def _read(self, client: Redis, queues: Sequence[str]) -> TailRound:
        following = [q for q in queues if q in self.last_ids]
        async with self._pipeline(client) as pipe:
            for queue in queues:
                pipe.xinfo_stream(self.backend.events_key(queue))
            if following:
                keys = [self.backend.events_key(q) for q in following]
                ids = [self.last_ids[q] for q in following]
                options = {NEVER_DECODE: True}  # bytes: only the entries kept are decoded
                pipe.execute_command(
                    "XREAD",
                    "COUNT",
                    BATCH,
                    "BLOCK",
                    self.block_ms,
                    "STREAMS",
                    *keys,
                    *ids,
                    **options,
                )
            replies: list[Any] = await pipe.execute(raise_on_error=False)
        gaps = []
        added_now: dict[str, int] = {}
        for queue, info in zip(queues, replies, strict=False):
            if isinstance(info, Exception):  # no stream yet: start from the beginning
                self.last_ids.setdefault(queue, "0-0")
                self._added.setdefault(queue, 0)
                continue
            if info.get("entries-added") is not None:
                added_now[queue] = int(info["entries-added"])
            if queue not in self.last_ids or self._was_reset(queue, info):
                self.last_ids[queue] = str(info.get("last-generated-id") or "0-0")
                self._added[queue] = int(info.get("entries-added") or 0)
            elif self._lost_entries(queue, info):
                gaps.append(queue)
                # continue after the gap: what is left is read next, counted from here on
                self._added[queue] = int(info.get("entries-added") or 0) - int(info["length"])
        events: list[Event] = []
        read = full = 0
        if following:
            reply = replies[len(queues)]
            if isinstance(reply, Exception):
                raise reply
            read, full = self._parse(reply or [], events)
        # entries XINFO counted before the read that the read did not reach
        backlog = max((n - self._added.get(q, n) for q, n in added_now.items()), default=0)
        behind = full > 0 or backlog > 0
        self._busy = read > 0
        return TailRound(tuple(events), tuple(gaps), read, behind)

    def _pipeline(self, client: Redis) -> Pipeline:
        """A pipeline of ``client`` that leaves XREAD replies as the server sent them."""
        if self._callbacks is None or self._callbacks[0] is not client.response_callbacks:
            callbacks: Any = CaseInsensitiveDict(cast(Any, client.response_callbacks))
            callbacks["XREAD"] = _raw
            self._callbacks = (client.response_callbacks, callbacks)
        return Pipeline(client.connection_pool, self._callbacks[1], False, None)

    def _was_reset(self, queue: str, info: dict[str, Any]) -> bool:
        """The stream was deleted and created again (or the server lost its data)."""
        last = _id_tuple(str(info.get("last-generated-id") or "0-0"))
        added = info.get("entries-added")
        shrank = added is not None and int(added) < self._added.get(queue, 0)
        return shrank or last < _id_tuple(self.last_ids[queue])

    def _lost_entries(self, queue: str, info: dict[str, Any]) -> bool:
        last_seen = _id_tuple(self.last_ids[queue])
        if _id_tuple(str(info.get("last-generated-id") or "0-0")) <= last_seen:
            return False  # nothing new
        first = info.get("first-entry")
        if first and _id_tuple(str(first[0])) <= last_seen:
            return False  # entries up to the last one seen are still there
        added = info.get("entries-added")
        if added is None:  # servers before 7.0: the first entry is all there is to go on
            return True
        return int(info["length"]) < int(added) - self._added.get(queue, 0)

    def _parse(self, reply: Any, events: list[Event]) -> tuple[int, int]:
        """Append the kept entries of a raw XREAD reply to ``events``; return how many entries
        it held, and how many of its streams returned ``BATCH`` of them (full: more may wait)."""
        by_key = {to_redis(self.backend.events_key(q)): q for q in self.last_ids}
        streams = reply.items() if isinstance(reply, dict) else reply  # RESP3 sends a map
        read = full = 0
        for key, entries in streams:
            queue = by_key.get(key if isinstance(key, bytes) else to_redis(key))
            if queue is None or not entries:
                continue
            # the event name of each entry, compared and counted as bytes: nothing decoded yet
            names = [
                fields[1] if fields and fields[0] == _EVENT else _event_name(fields)
                for _, fields in entries
            ]
            tally = Counter(names)
            self.backend.tally_events(queue, {from_redis(name): n for name, n in tally.items()})
            first_kept = 0 if self.keep is None else max(0, len(entries) - self.keep)
            kept: Sequence[int] = range(first_kept, len(entries))
            if first_kept and not self._notable_raw.isdisjoint(tally):
                older = (i for i in range(first_kept) if names[i] in self._notable_raw)
                kept = [*older, *kept]
            for index in kept:
                entry_id, fields = entries[index]
                pairs = iter(fields or ())
                fields_map = {
                    from_redis(k): from_redis(v) for k, v in zip(pairs, pairs, strict=False)
                }
                events.append(self.backend.parse_event(queue, from_redis(entry_id), fields_map))
            self.last_ids[queue] = from_redis(entries[-1][0])
            self._added[queue] = self._added.get(queue, 0) + len(entries)
            read += len(entries)
            full += len(entries) >= BATCH
        return read, full
