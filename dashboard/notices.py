"""``Announcer``: what deserves a notice as snapshots arrive: each circuit breaker change
(open, half-open, closed) seen in the events, each alert threshold breach that was not there in
the snapshot before (with a terminal bell when asked for), and an eviction policy that cannot be
read (R5: ``INFO`` refused), each time it becomes so. No Textual here."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Literal

from dashboard.eviction import UNREADABLE, UNREADABLE_NOTICE
from dashboard.model import DashboardSnapshot, Event
from dashboard.sanitize import display_text

SEEN_KEPT = 200
"""Breaker event ids remembered, so one change is announced once."""
Severity = Literal["information", "warning", "error"]  # as Textual's notify takes them
SEVERITY: dict[str, Severity] = {"open": "error", "half-open": "warning", "closed": "information"}


@dataclass(frozen=True, slots=True)
class Notice:
    """One notice to show: its text and severity (Textual's names)."""

    text: str
    severity: Severity = "information"


def breaker_notice(event: Event) -> Notice:
    """``orders: circuit breaker open (6 of 10 jobs failed in 60 s)``, sanitized."""
    state = event.get("state") or "?"
    reason = event.get("reason") or ""
    by = event.get("by") or ""
    text = f"{event.queue}: circuit breaker {state}"
    if reason:
        text += f" ({reason})"
    if by and by != "breaker":
        text += f" by {by}"
    return Notice(display_text(text, limit=150).plain, SEVERITY.get(state, "warning"))


class Announcer:
    """Remembers what was announced; ``new(snapshot)`` returns what is new since."""

    def __init__(self, bell: bool = False) -> None:
        self.bell = bell
        self._seen: deque[str] = deque(maxlen=SEEN_KEPT)
        self._breaches: frozenset[tuple[str, str]] | None = None
        self._policy: str | None = None

    def new(self, snapshot: DashboardSnapshot) -> tuple[list[Notice], bool]:
        """Notices for breaker changes, new breaches and an eviction policy that became
        unreadable; and whether to ring the bell."""
        notices = []
        policy = snapshot.maxmemory_policy
        if policy == UNREADABLE and self._policy != UNREADABLE:
            notices.append(Notice(UNREADABLE_NOTICE, "warning"))
        if policy is not None:
            self._policy = policy
        for event in snapshot.breaker_events:
            key = f"{event.queue}\0{event.entry_id}"
            if key not in self._seen:
                self._seen.append(key)
                notices.append(breaker_notice(event))
        current = frozenset((b.queue, b.what) for b in snapshot.breaches)
        # a breach is new when its queue did not pass that threshold before (not a new count)
        fresh = [b for b in snapshot.breaches if (b.queue, b.what) not in (self._breaches or ())]
        if self._breaches is None and not snapshot.breaches_read:
            fresh = []  # thresholds not measured yet
        else:
            self._breaches = current
        notices.extend(
            Notice(f"⚠ {display_text(b.text, limit=150).plain}", "warning") for b in fresh
        )
        return notices, bool(fresh) and self.bell
