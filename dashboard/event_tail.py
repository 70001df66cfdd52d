"""Tails the events streams of many queues with one blocking XREAD from the last id seen.

Each round first asks XINFO STREAM of every stream in the same pipeline. A stream met for the
first time starts at its last entry. A stream holds fewer entries after the last id seen than were
added since (``entries-added``) when trimming removed some before they were read: that is a gap.

A busy engine writes thousands of entries a second, so the XREAD reply is taken as the server
sent it (no per-entry dicts): of each stream only the newest ``keep`` entries and the ``notable``
ones (a stalled job, a breaker change) become ``Event``s; the backend is told how many entries of
each kind it read (``tally_events``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, cast

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.client import CaseInsensitiveDict

from dashboard.backend import Backend
from dashboard.model import Event

BATCH = 2_000
"""Entries read per stream and round, so one round's cost stays bounded."""
NOTABLE = frozenset({"stalled", "breaker"})
"""Events kept however many others came after them in the same round."""


def _raw(response: Any, **options: Any) -> Any:
    return response


def _event_name(fields: Sequence[str]) -> str:
    """The ``event`` field of a flat ``[field, value, ...]`` list (both engines write it first)."""
    if fields and fields[0] == "event":
        return fields[1]
    for index in range(0, len(fields) - 1, 2):
        if fields[index] == "event":
            return fields[index + 1]
    return "?"


def _id_tuple(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms or 0), int(seq or 0)


@dataclass(frozen=True, slots=True)
class TailRound:
    """What one round read: the events kept (in stream order), the queues whose streams had a
    gap, and how many entries it read in all."""

    events: tuple[Event, ...]
    gaps: tuple[str, ...]
    read: int = 0


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
        self._callbacks: tuple[Any, Any] | None = None
        self.last_ids: dict[str, str] = {}
        self._added: dict[str, int] = {}
        """``entries-added`` of each stream as of its last id seen."""

    def forget(self, queues: Sequence[str]) -> None:
        """Stop following queues that no longer exist."""
        for queue in queues:
            self.last_ids.pop(queue, None)
            self._added.pop(queue, None)

    async def read(self, client: Redis, queues: Sequence[str]) -> TailRound:
        """One round: XINFO every stream, then XREAD BLOCK the ones already followed."""
        following = [q for q in queues if q in self.last_ids]
        streams: dict[Any, Any] = {self.backend.events_key(q): self.last_ids[q] for q in following}
        async with self._pipeline(client) as pipe:
            for queue in queues:
                pipe.xinfo_stream(self.backend.events_key(queue))
            if streams:
                pipe.xread(streams, count=BATCH, block=self.block_ms)
            replies: list[Any] = await pipe.execute(raise_on_error=False)
        gaps = []
        for queue, info in zip(queues, replies, strict=False):
            if isinstance(info, Exception):  # no stream yet: start from the beginning
                self.last_ids.setdefault(queue, "0-0")
                self._added.setdefault(queue, 0)
                continue
            if queue not in self.last_ids or self._was_reset(queue, info):
                self.last_ids[queue] = str(info.get("last-generated-id") or "0-0")
                self._added[queue] = int(info.get("entries-added") or 0)
            elif self._lost_entries(queue, info):
                gaps.append(queue)
                # continue after the gap: what is left is read next, counted from here on
                self._added[queue] = int(info.get("entries-added") or 0) - int(info["length"])
        events: list[Event] = []
        read = 0
        if streams:
            reply = replies[len(queues)]
            if isinstance(reply, Exception):
                raise reply
            read = self._parse(reply or [], events)
        return TailRound(tuple(events), tuple(gaps), read)

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

    def _parse(self, reply: Any, events: list[Event]) -> int:
        """Append the kept entries of a raw XREAD reply to ``events``; return how many it held."""
        by_key = {self.backend.events_key(q): q for q in self.last_ids}
        streams = reply.items() if isinstance(reply, dict) else reply  # RESP3 sends a map
        read = 0
        for key, entries in streams:
            queue = by_key.get(str(key))
            if queue is None or not entries:
                continue
            names = [_event_name(fields or ()) for _, fields in entries]
            self.backend.tally_events(queue, Counter(names))
            first_kept = 0 if self.keep is None else max(0, len(entries) - self.keep)
            kept: Sequence[int] = range(first_kept, len(entries))
            if first_kept and not self.notable.isdisjoint(names[:first_kept]):
                older = (i for i in range(first_kept) if names[i] in self.notable)
                kept = [*older, *kept]
            for index in kept:
                entry_id, fields = entries[index]
                pairs = iter(fields or ())
                fields_map = dict(zip(pairs, pairs, strict=False))
                events.append(self.backend.parse_event(queue, str(entry_id), fields_map))
            self.last_ids[queue] = str(entries[-1][0])
            self._added[queue] = self._added.get(queue, 0) + len(entries)
            read += len(entries)
        return read
