"""QueueEvents: read a queue's events stream as typed events, resumable from any id."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from redis.exceptions import ResponseError

from .connection import Connection, make_client
from .keys import DEFAULT_PREFIX, QueueKeys

EVENT_NAMES = frozenset(
    {
        "added",
        "waiting",
        "active",
        "progress",
        "completed",
        "failed",
        "retrying",
        "delayed",
        "stalled",
        "removed",
        "paused",
        "resumed",
        "drained",
        "cleaned",
        "promoted",
        "duplicated",
        "deduplicated",
        "rate-limited",
        "priority-changed",
        "data-updated",
        "cancelled",
        "dead_lettered",
        "replayed",
        "breaker",
    }
)


@dataclass(frozen=True, slots=True)
class Event:
    """One entry of the events stream. ``gap`` events are made by the reader, not stored:
    they say entries were trimmed away before they could be read."""

    id: str
    queue: str
    event: str
    job_id: str | None = None
    fields: dict[str, str] = field(default_factory=dict)

    @property
    def timestamp_ms(self) -> int:
        """When the server wrote the entry (from the stream id)."""
        return int(self.id.split("-", 1)[0])

    @classmethod
    def from_entry(cls, queue: str, entry_id: str, fields: dict[str, str]) -> Event:
        """Parse one XREAD/XRANGE entry."""
        rest = {k: v for k, v in fields.items() if k not in ("event", "job_id")}
        return cls(entry_id, queue, fields.get("event", "unknown"), fields.get("job_id"), rest)


def _id_tuple(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


class QueueEvents:
    """``async for event in QueueEvents("emails"):`` — events from ``last_id`` on ("$" = new
    ones only, "0" = all kept). If entries were trimmed before being read, a ``gap`` event
    comes first, so a reader knows to recount from the queue's state."""

    def __init__(
        self,
        name: str,
        connection: Connection = None,
        *,
        prefix: str = DEFAULT_PREFIX,
        last_id: str = "$",
        block_ms: int = 5_000,
        batch: int = 500,
    ) -> None:
        self.keys = QueueKeys(name, prefix)
        self.last_id = last_id
        self._block_ms = block_ms
        self._batch = batch
        # (id, entries ever added up to it): set when a gap moved last_id past trimmed entries
        self._floor: tuple[str, int] | None = None
        self.client, self._owns = make_client(connection, socket_timeout=block_ms / 1000 + 10)

    async def close(self) -> None:
        """Close the connection if this reader opened it."""
        if self._owns:
            await self.client.aclose()

    async def _gap(self) -> Event | None:
        if self.last_id in ("$", "0", "0-0"):
            return None
        try:
            info: dict[str, Any] = await self.client.xinfo_stream(self.keys.events)
        except ResponseError:  # no stream yet
            return None
        last = _id_tuple(self.last_id)
        # XDEL records the newest id it removed; trimming (MAXLEN) does not, so that is told by
        # the oldest entry kept (or, for an emptied stream, the newest id it ever had).
        gone = _id_tuple(str(info.get("max-deleted-entry-id") or "0-0"))
        added, length = int(info.get("entries-added", 0)), int(info.get("length", 0))
        if self._floor is not None and self._floor[0] == self.last_id:
            removed = added - self._floor[1] > length  # any added since the last gap are gone
        else:
            removed = added > length
        first: Any = info.get("first-entry")
        if removed and first:
            ms, seq = _id_tuple(str(first[0]))
            gone = max(gone, (ms, seq - 1) if seq else (ms - 1, 2**64 - 1))
        elif removed:
            gone = max(gone, _id_tuple(str(info.get("last-generated-id") or "0-0")))
        if gone <= last:
            return None
        trimmed_to = f"{gone[0]}-{gone[1]}"
        if not first:  # emptied: exactly `added` entries were written up to trimmed_to
            self._floor = (trimmed_to, added)
        return Event(self.last_id, self.keys.queue, "gap", None, {"trimmed_to": trimmed_to})

    async def read(self) -> list[Event]:
        """One blocking read: the next events after ``last_id`` (may be empty)."""
        if self.last_id == "$":
            newest = await self.client.xrevrange(self.keys.events, count=1)
            self.last_id = str(newest[0][0]) if newest else "0-0"
        gap = await self._gap()
        reply = await self.client.xread(
            {self.keys.events: self.last_id},
            count=self._batch,
            block=None if gap else self._block_ms,  # report a gap at once
        )
        events = [gap] if gap else []
        streams: list[Any] = list(reply or [])
        for _stream, entries in streams:
            for entry_id, fields in entries:
                events.append(Event.from_entry(self.keys.queue, str(entry_id), dict(fields)))
                self.last_id = str(entry_id)
        if gap and len(events) == 1:  # nothing newer is kept: go past the gap, report it once
            self.last_id = gap.fields["trimmed_to"]
        return events

    def __aiter__(self) -> AsyncIterator[Event]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Event]:
        while True:
            for event in await self.read():
                yield event
