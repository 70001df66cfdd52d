"""One line of state tabs with their counts; the current state is highlighted."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from dashboard.model import STATE_ORDER, StateCounts
from dashboard.widgets.format import compact

SHORT = {
    "wait": "wait",
    "active": "act",
    "delayed": "dly",
    "prioritized": "pri",
    "failed": "fail",
    "completed": "done",
    "paused": "paus",
    "waiting-children": "wch",
}


class CountsBar(Static):
    """``1 wait 5  2 act 0 ...``: keys 1-8 switch between them."""

    DEFAULT_CSS = """
    CountsBar { height: 1; width: 1fr; }
    """

    def show(self, counts: StateCounts, current: str, paused: bool) -> None:
        """Render counts, marking ``current``."""
        text = Text(no_wrap=True, overflow="ellipsis", end="")
        for index, state in enumerate(STATE_ORDER, start=1):
            style = "bold reverse" if state == current else ""
            if state == "failed" and counts.failed and state != current:
                style = "red"
            text.append(f"{index} {SHORT[state]} {compact(counts.get(state))}", style=style)
            text.append(" ")
        if paused:
            text.append("PAUSED", style="bold yellow")
        self.update(text)
