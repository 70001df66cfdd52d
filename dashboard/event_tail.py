"""Tails the events streams of many queues with one blocking XREAD from the last id seen.

Each round first asks XINFO STREAM of every stream in the same pipeline. A stream met for the
first time starts at its last entry. A stream holds fewer entries after the last id seen than were
added since (``entries-added``) when trimming removed some before they were read: that is a gap.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from dashboard.backend import Backend
from dashboard.model import Event

BATCH = 500
"""Entries read per stream and round, so one round's cost stays bounded."""


def _id_tuple(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms or 0), int(seq or 0)


@dataclass(frozen=True, slots=True)
class TailRound:
    """What one round read: the events, and the queues whose streams had a gap."""

    events: tuple[Event, ...]
    gaps: tuple[str, ...]


class EventTail:
    """Remembers the last id read per queue stream, across reconnects."""

    def __init__(self, backend: Backend, block_ms: int = 1_000) -> None:
        self.backend = backend
        self.block_ms = block_ms
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
        async with client.pipeline(transaction=False) as pipe:
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
        if streams:
            reply = replies[len(queues)]
            if isinstance(reply, Exception):
                raise reply
            events = self._parse(reply or [])
        return TailRound(tuple(events), tuple(gaps))

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

    def _parse(self, reply: list[Any]) -> list[Event]:
        by_key = {self.backend.events_key(q): q for q in self.last_ids}
        events: list[Event] = []
        for key, entries in reply:
            queue = by_key.get(str(key))
            if queue is None:
                continue
            for entry_id, fields in entries:
                events.append(self.backend.parse_event(queue, str(entry_id), fields or {}))
                self.last_ids[queue] = str(entry_id)
                self._added[queue] = self._added.get(queue, 0) + 1
        return events
