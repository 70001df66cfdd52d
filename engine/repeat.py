"""When a job scheduler's jobs run: every N ms, or a cron pattern in a time zone (croniter).

``Timing`` validates a definition and computes ticks; all times are ms since the epoch on the
server clock (the caller passes the server's "now").
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

from .errors import InvalidJobOptions

MAX_EVERY_MS = 10 * 365 * 86_400_000
_MS_BOUND = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def to_ms(name: str, value: object) -> int | None:
    """A date option as ms since the epoch: an int (ms) or a time-zone-aware ``datetime``."""
    if value is None:
        return None
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise InvalidJobOptions(
                f"{name}={value!r} is invalid: a naive datetime is ambiguous; give it a tzinfo "
                "(e.g. datetime(..., tzinfo=timezone.utc)) or pass ms since the epoch"
            )
        return int(value.timestamp() * 1000)
    if _is_int(value) and 0 <= value <= _MS_BOUND:  # type: ignore[operator]
        return value  # type: ignore[return-value]
    raise InvalidJobOptions(
        f"{name}={value!r} is invalid: expected ms since the epoch (an int >= 0) or an aware "
        "datetime"
    )


def _zone(tz: object) -> ZoneInfo:
    if not isinstance(tz, str) or not tz:
        raise InvalidJobOptions(
            f"tz={tz!r} is invalid: expected an IANA zone name like 'Europe/Paris'"
        )
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidJobOptions(
            f"tz={tz!r} is invalid: no such IANA time zone (e.g. 'Europe/Paris', 'UTC')"
        ) from None


def _check_pattern(pattern: object, zone: ZoneInfo) -> str:
    if not isinstance(pattern, str) or not pattern.strip():
        raise InvalidJobOptions(f"pattern={pattern!r} is invalid: expected a cron expression")
    try:
        croniter(pattern, datetime.now(zone), second_at_beginning=True)
    except (ValueError, KeyError, TypeError) as exc:
        raise InvalidJobOptions(
            f"pattern={pattern!r} is not a valid cron expression ({exc}); expected 5 fields "
            "'minute hour day month weekday', or 6 with seconds first"
        ) from None
    return pattern


@dataclass(frozen=True, slots=True)
class Timing:
    """A scheduler's timing: exactly one of ``every`` (ms) and ``pattern`` (cron, with ``tz``),
    optionally bounded by ``start_date``/``end_date`` (ms) and a ``limit`` of jobs."""

    every: int | None = None
    pattern: str | None = None
    tz: str | None = None
    start_date: int | None = None
    end_date: int | None = None
    limit: int | None = None

    @classmethod
    def build(
        cls,
        *,
        every: object = None,
        pattern: object = None,
        tz: object = None,
        start_date: object = None,
        end_date: object = None,
        limit: object = None,
    ) -> Timing:
        """Validate a definition; each error names the option and what was expected."""
        if (every is None) == (pattern is None):
            raise InvalidJobOptions(
                "a job scheduler needs exactly one of every=<ms> and pattern=<cron>, "
                f"got every={every!r}, pattern={pattern!r}"
            )
        if every is not None and (not _is_int(every) or not 0 < every <= MAX_EVERY_MS):  # type: ignore[operator]
            raise InvalidJobOptions(
                f"every={every!r} is invalid: expected an integer number of ms from 1 to "
                f"{MAX_EVERY_MS}"
            )
        if tz is not None and pattern is None:
            raise InvalidJobOptions(f"tz={tz!r} only applies to a cron pattern, not to every")
        if pattern is not None:
            pattern = _check_pattern(pattern, _zone(tz) if tz is not None else ZoneInfo("UTC"))
        start, end = to_ms("start_date", start_date), to_ms("end_date", end_date)
        if start is not None and end is not None and end < start:
            raise InvalidJobOptions(f"end_date={end_date!r} is before start_date={start_date!r}")
        if limit is not None and (not _is_int(limit) or limit < 1):  # type: ignore[operator]
            raise InvalidJobOptions(f"limit={limit!r} is invalid: expected an integer >= 1")
        return cls(every, pattern, tz, start, end, limit)  # type: ignore[arg-type]

    def _cron_after(self, after_ms: int) -> int:
        """The first cron time strictly after ``after_ms``."""
        assert self.pattern is not None
        zone = ZoneInfo(self.tz or "UTC")
        start = datetime.fromtimestamp(after_ms / 1000, zone)
        it = croniter(self.pattern, start, second_at_beginning=True)
        return round(it.get_next(float) * 1000)

    def first_tick(self, now: int) -> int:
        """When the first job runs: now (or the start date) for ``every``, else the first cron
        time from then on; -1 when that is after the end date."""
        begin = max(now, self.start_date or 0)
        tick = begin if self.every is not None else self._cron_after(begin - 1)
        return -1 if self.end_date is not None and tick > self.end_date else tick

    def next_tick(self, tick: int, now: int) -> int:
        """The tick after ``tick``. Ticks missed while nobody took the jobs are skipped: the
        result is always later than ``now``."""
        if self.every is not None:
            nxt = tick + self.every
            if nxt <= now:
                nxt += self.every * ((now - nxt) // self.every + 1)
            return nxt
        return self._cron_after(max(tick, now))

    def ticks_before(self, tick: int, count: int) -> list[int]:
        """Up to ``count`` ticks of this timing before ``tick``, newest first, none before the
        start date: where a scheduler's earlier jobs were (ticks missed while nobody took the
        jobs had none)."""
        earlier: list[int] = []
        if self.every is not None:
            earlier = [tick - k * self.every for k in range(1, count + 1)]
        elif self.pattern is not None:
            # on the zone's wall clock, without the zone: a pattern names wall-clock times, and
            # croniter releases disagree on stepping backwards across a DST change
            zone = ZoneInfo(self.tz or "UTC")
            wall = datetime.fromtimestamp(tick / 1000, zone).replace(tzinfo=None)
            it = croniter(self.pattern, wall, second_at_beginning=True)
            earlier = [
                round(it.get_prev(datetime).replace(tzinfo=zone).timestamp() * 1000)
                for _ in range(count)
            ]
        floor = self.start_date or 0
        return [t for t in earlier if t >= floor]

    def to_fields(self) -> dict[str, str]:
        """The fields stored in the scheduler hash (only those that are set)."""
        values: dict[str, Any] = {
            "every": self.every,
            "pattern": self.pattern,
            "tz": self.tz,
            "start_date": self.start_date,
            "end_date": self.end_date,
            "limit": self.limit,
        }
        return {name: str(value) for name, value in values.items() if value is not None}

    @classmethod
    def from_fields(cls, fields: dict[str, str]) -> Timing:
        """Read back what ``to_fields`` stored."""

        def number(name: str) -> int | None:
            raw = fields.get(name)
            return int(raw) if raw not in (None, "") else None

        return cls(
            every=number("every"),
            pattern=fields.get("pattern") or None,
            tz=fields.get("tz") or None,
            start_date=number("start_date"),
            end_date=number("end_date"),
            limit=number("limit"),
        )

    def fingerprint(self) -> str:
        """A digest of what decides the ticks (every, pattern, tz, start date); the limit and
        end date only decide when they stop, and are checked by the scripts."""
        fields = self.to_fields()
        return fingerprint(
            {k: fields[k] for k in ("every", "pattern", "tz", "start_date") if k in fields}
        )


def fingerprint(value: Any) -> str:
    """A short stable digest of a JSON-able value."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:16]
