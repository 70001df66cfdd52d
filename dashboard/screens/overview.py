"""The first screen: every queue with counts, rate and trend, and the throughput chart."""

from __future__ import annotations

from textual.app import ComposeResult

from dashboard.breaker_prompts import confirm_breaker
from dashboard.keymap import OVERVIEW_KEYS, bindings
from dashboard.model import DashboardSnapshot
from dashboard.sanitize import display_text
from dashboard.screens.base import DashScreen
from dashboard.screens.dead_letters import open_dead_letters
from dashboard.screens.queue import QueueScreen
from dashboard.screens.schedulers import SchedulersScreen
from dashboard.screens.stalled import StalledScreen
from dashboard.screens.workers import WorkersScreen
from dashboard.widgets.key_bar import KeyBar
from dashboard.widgets.queue_table import QueueTable
from dashboard.widgets.throughput_chart import ThroughputChart


class OverviewScreen(DashScreen):
    """Queues table above, chart below; ``enter`` opens a queue."""

    KEYS = OVERVIEW_KEYS
    HELP_NOTES = (
        "wait counts the jobs ready to run: wait + prioritized + paused (80 columns leave no "
        "room for a column each; the queue screen's tabs 1, 4 and 7 show them apart).",
        "The chart shows the queue under the cursor; a switches to all queues and back.",
    )
    BINDINGS = bindings(OVERVIEW_KEYS)

    def compose(self) -> ComposeResult:
        """Status bar, queue table, chart, footer."""
        yield self.status_bar()
        yield QueueTable(id="queues")
        yield ThroughputChart(id="chart")
        yield KeyBar()

    def on_mount(self) -> None:
        """The table has the focus."""
        self.query_one(QueueTable).focus()

    chart_all = False
    """The chart shows every queue (``a``) instead of the one under the cursor."""

    def show_snapshot(self, snapshot: DashboardSnapshot) -> None:
        """Refresh the table and the chart."""
        super().show_snapshot(snapshot)
        self.query_one(QueueTable).show(snapshot)
        self._show_chart(snapshot)

    def _show_chart(self, snapshot: DashboardSnapshot) -> None:
        """The selected queue's series, or all queues' when ``a`` chose so (or none is)."""
        queue = None if self.chart_all else snapshot.queue(self._selected() or "")
        chart = self.query_one(ThroughputChart)
        if queue is None:
            scope = "all" if len(snapshot.queues) > 1 else ""
            chart.show(
                snapshot.completed_history,
                snapshot.failed_history,
                snapshot.hour_completed,
                snapshot.hour_failed,
                scope,
            )
            return
        chart.show(
            queue.completed_history,
            queue.failed_history,
            queue.hour_completed,
            queue.hour_failed,
            display_text(queue.name, limit=14, say_how_much=False).plain,
        )

    def on_data_table_row_highlighted(self) -> None:
        """The chart follows the cursor."""
        if self.dash.snapshot is not None and not self.dash.frozen:
            self._show_chart(self.dash.snapshot)

    def action_toggle_chart_scope(self) -> None:
        """Chart every queue, or the one under the cursor."""
        self.chart_all = not self.chart_all
        if self.dash.snapshot is not None:
            self._show_chart(self.dash.snapshot)

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

    def action_breaker(self, remove: bool) -> None:
        """Close (``b``) or remove (``B``) the queue's circuit breaker (confirmed)."""
        queue = self._selected()
        if queue is not None:
            confirm_breaker(self.dash, queue, remove)

    def action_dead_letters(self) -> None:
        """Dead letters of this (or the only) dead-letter queue, to list and replay."""
        open_dead_letters(self.dash, self._selected())

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
