"""The newest ``stalled`` events of a queue: when, and which job (a lock expired, so the job
went back to wait or failed)."""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual.widgets import Static

from dashboard.model import Event
from dashboard.sanitize import display_text
from dashboard.widgets.format import clock

SHOWN = 5


def event_time(event: Event) -> float | None:
    """Epoch seconds of a stream entry, from its id (``<ms>-<seq>``)."""
    ms = event.entry_id.partition("-")[0]
    return int(ms) / 1000 if ms.isdigit() else None


class StalledEvents(Static):
    """A count line, then the newest ``SHOWN`` events, newest first."""

    DEFAULT_CSS = """
    StalledEvents { height: auto; max-height: 6; text-wrap: nowrap; text-overflow: ellipsis; }
    """
    """One line per event: a long job id is cut at the edge, never wrapped onto a second line
    that would push the oldest of the ``SHOWN`` events out of the widget's six lines."""

    def show(self, events: Sequence[Event]) -> None:
        """Render the events of one queue (oldest first, as the monitor keeps them)."""
        text = Text(no_wrap=True, end="")
        if not events:
            text.append("no stalled events since the dashboard started", style="dim")
            self.update(text)
            return
        text.append(f"⚠ {len(events)} stalled event{'s' if len(events) != 1 else ''}", "bold red")
        text.append(" since the dashboard started; newest:")
        for event in list(reversed(events))[:SHOWN]:
            text.append(f"\n  {clock(event_time(event))}  job ")
            text.append_text(display_text(event.job_id, limit=30))
            text.append("  queue ")
            text.append_text(display_text(event.queue, limit=30))
        self.update(text)
