"""The one-line top bar: masked URL, mode, READ-ONLY badge, clock and the first alert."""

from __future__ import annotations

import time

from rich.text import Text
from textual.widgets import Static

from dashboard.model import DashboardSnapshot, Mode
from dashboard.sanitize import display_text
from dashboard.widgets.format import clock

MODE_STYLES = {
    Mode.LIVE: "bold black on green",
    Mode.POLLING: "bold black on yellow",
    Mode.FROZEN: "bold white on blue",
    Mode.DISCONNECTED: "bold white on red",
}


class StatusBar(Static):
    """Renders where the data comes from and how fresh it is."""

    DEFAULT_CSS = """
    StatusBar { height: 1; width: 1fr; }
    """

    def __init__(self, masked_url: str, read_only: bool, **kwargs: object) -> None:
        super().__init__("", **kwargs)  # type: ignore[arg-type]
        self.masked_url = masked_url
        self.read_only = read_only
        self.snapshot: DashboardSnapshot | None = None
        self.frozen = False
        self._shown: Text | None = None

    def on_mount(self) -> None:
        """Tick the clock."""
        self.set_interval(1.0, self._redraw)
        self._redraw()

    def show(self, snapshot: DashboardSnapshot | None, frozen: bool) -> None:
        """Render a new snapshot (or the same one, frozen or not)."""
        self.snapshot = snapshot
        self.frozen = frozen
        self._redraw()

    def render_line_text(self) -> Text:
        """The bar's text, also used by tests."""
        snapshot = self.snapshot
        mode = Mode.FROZEN if self.frozen else (snapshot.mode if snapshot else Mode.POLLING)
        text = Text(no_wrap=True, overflow="ellipsis", end="")
        text.append_text(display_text(self.masked_url, limit=40))
        text.append(" ")
        text.append(f" {mode.value} ", style=MODE_STYLES[mode])
        if self.read_only:
            text.append(" ")
            text.append(" READ-ONLY ", style="bold black on cyan")
        text.append(f" {clock(time.time())}")
        if snapshot is not None and snapshot.mode is Mode.DISCONNECTED:
            text.append(f"  last data {clock(snapshot.as_of)}", style="red")
        elif snapshot is not None and snapshot.alerts:
            text.append("  ⚠ ", style="bold yellow")
            text.append_text(display_text(snapshot.alerts[0], limit=60))
            if len(snapshot.alerts) > 1:
                text.append(f" (+{len(snapshot.alerts) - 1})", style="yellow")
        return text

    def _redraw(self) -> None:
        text = self.render_line_text()
        if text != self._shown:  # most snapshots change nothing here; the clock ticks once a second
            self._shown = text
            self.update(text, layout=False)  # one line, always: its size never changes
