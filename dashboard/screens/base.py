"""What every dashboard screen shares: the status bar, read-only key hiding, snapshot hook."""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from textual.screen import Screen

from dashboard.keymap import MUTATING_ACTIONS
from dashboard.model import DashboardSnapshot, Mode
from dashboard.widgets.status_bar import StatusBar

if TYPE_CHECKING:
    from dashboard.app import DashboardApp


class DashScreen(Screen[None]):
    """A screen that shows live data from the app's latest snapshot."""

    @property
    def dash(self) -> DashboardApp:
        """The app, with its reads, actions and latest snapshot."""
        return cast("DashboardApp", self.app)

    def status_bar(self) -> StatusBar:
        """A status bar for this screen."""
        return StatusBar(self.dash.masked_url, self.dash.read_only, id="status")

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Hide (and refuse) every mutating key in read-only mode."""
        return not (self.dash.read_only and action in MUTATING_ACTIONS)

    def on_screen_resume(self) -> None:
        """Show the latest data when the screen comes (back) to the top."""
        if self.dash.snapshot is not None:
            self.apply_snapshot(self.dash.snapshot)

    def apply_snapshot(self, snapshot: DashboardSnapshot) -> None:
        """Show a snapshot once the screen's widgets exist (a pushed screen composes later)."""
        if self.is_mounted and self.query(StatusBar):
            self.show_snapshot(snapshot)

    def show_snapshot(self, snapshot: DashboardSnapshot) -> None:
        """Render a snapshot; screens extend this."""
        self.query_one(StatusBar).show(snapshot, self.dash.frozen)
        self.set_class(snapshot.mode is Mode.DISCONNECTED, "stale")
