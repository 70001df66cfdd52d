"""The overview's queue table: counts, rate and a text sparkline per queue."""

from __future__ import annotations

from rich.text import Text

from dashboard.model import DashboardSnapshot, QueueSnapshot
from dashboard.sanitize import display_text
from dashboard.widgets.format import compact, rate, short_duration, spark
from dashboard.widgets.keyed_table import KeyedTable


class QueueTable(KeyedTable):
    """One row per queue, keyed by queue name so the cursor stays on its queue."""

    COLUMNS = ("queue", "wait", "active", "delay", "failed", "done", "/s", "wkr", "oldest", "trend")

    @property
    def selected_queue(self) -> str | None:
        """The queue under the cursor."""
        return self.selected_key

    def show(self, snapshot: DashboardSnapshot) -> None:
        """Show the snapshot's queues (only the cells that changed), keeping the cursor's queue."""
        self.show_rows([(queue.name, self._cells(queue)) for queue in snapshot.queues])

    @staticmethod
    def _cells(queue: QueueSnapshot) -> list[Text]:
        name = display_text(queue.name, limit=18)
        if queue.paused:
            name = Text.assemble(("⏸ ", "yellow"), name)
        if queue.breaker is not None:  # tripped: workers take nothing until it closes
            name = Text.assemble(("⚡ ", "bold red" if queue.breaker == "open" else "yellow"), name)
        if queue.dead_letter:  # its failed jobs are dead letters: D lists and replays them
            name = Text.assemble(("✉ ", "magenta"), name)
        if queue.events_gap:
            name.append(" !", style="bold red")
        counts = queue.counts
        failed = Text(compact(counts.failed), style="red" if counts.failed else "")
        return [
            name,
            Text(compact(counts.wait + counts.paused + counts.prioritized)),
            Text(compact(counts.active)),
            Text(compact(counts.delayed)),
            failed,
            Text(compact(counts.completed)),
            Text(rate(queue.jobs_per_sec)),
            _workers(queue),
            Text(short_duration(queue.oldest_wait_age_ms)),
            Text(spark(queue.history, width=10), style="green"),
        ]


def _workers(queue: QueueSnapshot) -> Text:
    """Live workers; red when jobs wait and no worker is alive to take them."""
    if queue.workers is None:
        return Text("-")
    waiting = queue.counts.wait + queue.counts.prioritized
    return Text(str(queue.workers), style="bold red" if waiting and not queue.workers else "")
