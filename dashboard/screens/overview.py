"""The first screen: every queue with counts, rate and trend, and the throughput chart."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.widgets import Footer

from dashboard.keymap import OVERVIEW_KEYS, bindings
from dashboard.model import DashboardSnapshot
from dashboard.screens.base import DashScreen
from dashboard.screens.queue import QueueScreen
from dashboard.screens.schedulers import SchedulersScreen
from dashboard.screens.stalled import StalledScreen
from dashboard.screens.workers import WorkersScreen
from dashboard.widgets.queue_table import QueueTable
from dashboard.widgets.throughput_chart import ThroughputChart


class OverviewScreen(DashScreen):
    """Queues table above, chart below; ``enter`` opens a queue."""

    KEYS = OVERVIEW_KEYS
    BINDINGS = bindings(OVERVIEW_KEYS)

    def compose(self) -> ComposeResult:
        """Status bar, queue table, chart, footer."""
        yield self.status_bar()
        yield QueueTable(id="queues")
        yield ThroughputChart(id="chart")
        yield Footer()

    def on_mount(self) -> None:
        """The table has the focus."""
        self.query_one(QueueTable).focus()

    def show_snapshot(self, snapshot: DashboardSnapshot) -> None:
        """Refresh the table and the chart."""
        super().show_snapshot(snapshot)
        self.query_one(QueueTable).show(snapshot)
        self.query_one(ThroughputChart).show(
            snapshot.completed_history,
            snapshot.failed_history,
            snapshot.hour_completed,
            snapshot.hour_failed,
        )

    def _selected(self) -> str | None:
        return self.query_one(QueueTable).selected_queue

    def action_cursor(self, direction: str) -> None:
        """``j``/``k`` move like the arrows."""
        table = self.query_one(QueueTable)
        if direction == "down":
            table.action_cursor_down()
        else:
            table.action_cursor_up()

    def action_open_queue(self) -> None:
        """Open the queue under the cursor."""
        queue = self._selected()
        if queue is not None:
            self.app.push_screen(QueueScreen(queue))

    def on_data_table_row_selected(self) -> None:
        """Enter on a row opens it too."""
        self.action_open_queue()

    def action_toggle_pause(self) -> None:
        """Pause or resume the queue under the cursor (confirmed)."""
        queue = self._selected()
        if queue is not None:
            self.dash.confirm_pause(queue)

    def action_retry_all(self) -> None:
        """Retry the failed jobs of the queue under the cursor (typed confirmation)."""
        queue = self._selected()
        if queue is not None:
            self.dash.confirm_retry_all(queue)

    def action_stalled(self) -> None:
        """Stalled and stuck jobs of the queue under the cursor."""
        queue = self._selected()
        if queue is not None:
            self.app.push_screen(StalledScreen(queue))

    def action_workers(self) -> None:
        """Live workers of every queue (``a`` narrows to the queue under the cursor)."""
        self.app.push_screen(WorkersScreen(self._selected(), all_queues=True))

    def action_schedulers(self) -> None:
        """Job schedulers of the queue under the cursor."""
        queue = self._selected()
        if queue is not None:
            self.app.push_screen(SchedulersScreen(queue))

    def action_enable_notifications(self) -> None:
        """Offer the exact CONFIG SET that turns keyspace notifications on (confirmed)."""
        self.dash.confirm_enable_notifications()

    def action_quit(self) -> None:
        """``q`` at the top level quits."""
        self.app.exit()
