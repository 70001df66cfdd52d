"""The top bar: masked URL, mode, READ-ONLY badge, clock and the first alert on one line;
while the connection fails, a second line saying why (redacted); else, while the server's
``maxmemory-policy`` may evict jobs (R5), a red second line naming it (yellow where the policy
cannot be read); else, in write mode on a replica (Z2), a yellow line saying actions are off.
Each line is cut to the terminal's width, so none wraps into the next."""

from __future__ import annotations

import time

from rich.cells import cell_len
from rich.text import Text
from textual.widgets import Static

from dashboard.eviction import UNREADABLE
from dashboard.model import DashboardSnapshot, Mode
from dashboard.notifications import can_offer
from dashboard.sanitize import display_text
from dashboard.widgets.format import clock

MODE_STYLES = {
    Mode.LIVE: "bold black on green",
    Mode.POLLING: "bold black on yellow",
    Mode.FROZEN: "bold white on blue",
    Mode.DISCONNECTED: "bold white on red",
}

REPLICA_BANNER = "⚠ a replica: actions refused; point the dashboard at the primary"
"""The second line in write mode on a replica (Z2)."""


class StatusBar(Static):
    """Renders where the data comes from and how fresh it is."""

    DEFAULT_CSS = """
    StatusBar { height: auto; max-height: 2; width: 1fr; }
    """

    def __init__(
        self, masked_url: str, read_only: bool, unsafe_ok: bool = False, **kwargs: object
    ) -> None:
        super().__init__("", **kwargs)  # type: ignore[arg-type]
        self.masked_url = masked_url
        self.read_only = read_only
        self.unsafe_ok = unsafe_ok
        """``--allow-unsafe-eviction``: actions go on while the server may evict jobs."""

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
        if snapshot is not None and snapshot.mode is Mode.DISCONNECTED:
            # the time of the last data on screen, not the clock
            seen = f"data as of {clock(snapshot.as_of)}" if snapshot.as_of else "no data yet"
            text.append(f" {seen}", style="red")
        else:
            text.append(f" {clock(time.time())}")
            if snapshot is not None and snapshot.alerts:
                text.append("  ⚠ ", style="bold yellow")
                text.append_text(display_text(snapshot.alerts[0], limit=60))
                if len(snapshot.alerts) > 1:
                    text.append(f" (+{len(snapshot.alerts) - 1})", style="yellow")
            elif can_offer(snapshot, self.read_only):
                text.append("  K: turn on live updates", style="yellow")
        if snapshot is not None and snapshot.error:  # a second line, while there is an error
            text.append("\n✖ ", style="bold red")
            text.append_text(display_text(snapshot.error, limit=76, style="red"))
        elif snapshot is not None and snapshot.evicting_policy is not None:
            text.append("\n")
            text.append_text(self._eviction_banner(snapshot.evicting_policy))
        elif snapshot is not None and snapshot.replica is not None and not self.read_only:
            text.append("\n")
            text.append(REPLICA_BANNER, style="bold black on yellow")
        return text

    def _eviction_banner(self, policy: str) -> Text:
        """The red line shown while the server may evict jobs, and what that means here; a
        yellow one while the policy cannot be read (this user may not run INFO)."""
        if policy == UNREADABLE:
            style = "bold black on yellow"
            banner = Text("⚠ maxmemory-policy unknown: INFO refused (grant +info)", style=style)
        else:
            style = "bold white on red"
            banner = Text("⚠ maxmemory-policy ", style=style)
            banner.append_text(display_text(policy, limit=20, style=style))
            banner.append(": may evict jobs", style=style)
        if self.read_only:
            banner.append("; only noeviction is safe", style=style)
        elif self.unsafe_ok:
            banner.append("; acting anyway (override)", style=style)
        else:
            banner.append("; actions refused", style=style)
        return banner

    def _fitted(self, text: Text) -> Text:
        """``text`` with each line cut to the bar's width (an ellipsis at the cut): a first
        line longer than the terminal would wrap and push the second one (the error or the
        eviction banner) out of the bar."""
        width = self.size.width
        if width <= 0 or all(cell_len(line) <= width for line in text.plain.split("\n")):
            return text
        lines = text.split("\n", allow_blank=True)
        for line in lines:
            line.truncate(width, overflow="ellipsis")
        return Text("\n", end="").join(lines)

    def on_resize(self) -> None:
        """Cut the lines again for the new width."""
        self._shown = None
        self._redraw()

    def _redraw(self) -> None:
        text = self._fitted(self.render_line_text())
        if text != self._shown:  # most snapshots change nothing here; the clock ticks once a second
            two_lines = "\n" in text.plain
            lines_changed = self._shown is None or two_lines != ("\n" in self._shown.plain)
            self._shown = text
            # one line, or two while an error shows: a new layout only when that changes
            self.update(text, layout=lines_changed)
