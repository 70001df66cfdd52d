"""What every dashboard screen shares: the status bar, read-only key hiding, snapshot hook."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, cast

from textual.css.query import NoMatches
from textual.screen import Screen

from dashboard.keymap import MUTATING_ACTIONS
from dashboard.model import DashboardSnapshot, Mode
from dashboard.widgets.status_bar import StatusBar

STATE_ACTIONS: dict[str, frozenset[str]] = {
    "retry_job": frozenset({"failed", "completed"}),
    "promote_job": frozenset({"delayed"}),
    "cancel_job": frozenset({"wait", "paused", "prioritized", "delayed", "active"}),
    "discard_job": frozenset(
        {"wait", "paused", "prioritized", "delayed", "failed", "completed", "waiting-children"}
    ),
}
"""The states each job action applies to: an active job belongs to its worker, so only a
cancel reaches it, and through that worker."""

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
        return StatusBar(
            self.dash.masked_url,
            self.dash.read_only,
            unsafe_ok=self.dash.allow_unsafe_eviction,
            id="status",
        )

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Hide (and refuse) every mutating key in read-only mode, and job actions that do not
        apply to the state on screen (no "Promote" on a failed job)."""
        if self.dash.read_only and action in MUTATING_ACTIONS:
            return False
        state = self.shown_state()
        if state is not None and action in STATE_ACTIONS:
            return state in STATE_ACTIONS[action]
        return True

    def shown_state(self) -> str | None:
        """The state of the job(s) the screen's job keys act on, if it knows it."""
        return None

    def on_screen_resume(self) -> None:
        """Show the latest data when the screen comes (back) to the top."""
        if self.dash.snapshot is not None:
            self.apply_snapshot(self.dash.snapshot)

    def apply_snapshot(self, snapshot: DashboardSnapshot) -> None:
        """Show a snapshot once the screen's widgets exist (a pushed screen composes later)."""
        if not (self.is_mounted and self.query(StatusBar)):
            return
        # Part of the screen may still be mounting; it shows the next snapshot then.
        with contextlib.suppress(NoMatches):
            self.show_snapshot(snapshot)

    def show_snapshot(self, snapshot: DashboardSnapshot) -> None:
        """Render a snapshot; screens extend this."""
        self.query_one(StatusBar).show(snapshot, self.dash.frozen)
        self.set_class(snapshot.mode is Mode.DISCONNECTED, "stale")
