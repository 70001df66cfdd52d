"""Live workers, one row each (host, pid, concurrency, jobs in flight, up for, restarts by its
supervisor, last beat), and a red row for each queue that has jobs waiting and no live worker
to take them."""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text

from dashboard.model import QueueSnapshot, WorkerRow
from dashboard.sanitize import display_text
from dashboard.widgets.format import compact, short_duration
from dashboard.widgets.keyed_table import KeyedTable


def waiting(queue: QueueSnapshot) -> int:
    """Jobs a worker could take now."""
    return queue.counts.wait + queue.counts.prioritized


def unattended(queues: Sequence[QueueSnapshot]) -> list[QueueSnapshot]:
    """Queues with jobs waiting, not paused, and no live worker (or none ever seen)."""
    return [q for q in queues if waiting(q) and not q.paused and not q.workers]


def beat_text(worker: WorkerRow, now_ms: int) -> Text:
    """Age of the last heartbeat; yellow once two beats were missed, red once it expired."""
    age = max(now_ms - worker.last_beat_ms, 0)
    ttl = max(worker.expires_ms - worker.last_beat_ms, 1)
    style = "bold red" if age >= ttl else "yellow" if age > ttl / 2 else ""
    if age < 10_000:
        return Text(f"{age / 1000:.1f}s", style=style)
    return Text(short_duration(age), style=style)


class WorkersTable(KeyedTable):
    """Rows keyed by queue and worker id; unattended queues first."""

    COLUMNS = ("queue", "host", "pid", "conc", "busy", "up", "rst", "beat")

    def show(
        self, workers: Sequence[WorkerRow], flagged: Sequence[QueueSnapshot], now_ms: int
    ) -> None:
        """Replace the rows, keeping the cursor on the same index."""
        row = self.cursor_row
        self.clear()
        for queue in flagged:
            self.add_row(
                display_text(queue.name, limit=16, style="bold red", say_how_much=False),
                Text("no live worker", style="bold red"),
                Text(""),
                Text(""),
                Text(""),
                Text(""),
                Text(""),
                Text(f"{compact(waiting(queue))} waiting", style="red"),
                key=f"flag\0{queue.name}",
            )
        for worker in workers:
            busy = worker.in_flight >= worker.concurrency > 0
            self.add_row(
                display_text(worker.queue, limit=16, say_how_much=False),
                display_text(worker.host, limit=16, say_how_much=False),
                Text(str(worker.pid)),
                Text(str(worker.concurrency)),
                Text(str(worker.in_flight), style="bold" if busy else ""),
                Text(short_duration(max(now_ms - worker.started_ms, 0))),
                Text(compact(worker.restarts), style="yellow" if worker.restarts else "dim"),
                beat_text(worker, now_ms),
                key=f"{worker.queue}\0{worker.id}",
            )
        if self.row_count:
            self.move_cursor(row=min(row, self.row_count - 1))
