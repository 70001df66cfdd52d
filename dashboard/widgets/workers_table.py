"""Live workers, one row each (host, pid, concurrency, jobs in flight, up for, restarts by its
supervisor, last beat; "n/a" where the queue's layout records none of it), and a red row for
each queue that has jobs waiting and no live worker to take them."""

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


def known(value: int | None) -> Text:
    """The number, or a dim "n/a" when the layout does not record it."""
    return Text("n/a", style="dim") if value is None else Text(str(value))


def beat_text(worker: WorkerRow, now_ms: int) -> Text:
    """Age of the last heartbeat; yellow once two beats were missed, red once it expired."""
    age = max(now_ms - worker.last_beat_ms, 0)
    style = ""
    if worker.expires_ms is not None:
        ttl = max(worker.expires_ms - worker.last_beat_ms, 1)
        style = "bold red" if age >= ttl else "yellow" if age > ttl / 2 else ""
    if age < 10_000:
        return Text(f"{age / 1000:.1f}s", style=style)
    return Text(short_duration(age), style=style)


def describe(worker: WorkerRow, now_ms: int) -> Text | None:
    """The highlighted worker's name and id, and what its layout does not record; None when
    the row already shows all there is (a worker with a heartbeat record)."""
    missing = [
        label
        for label, value in (
            ("pid", worker.pid),
            ("concurrency", worker.concurrency),
            ("jobs in flight", worker.in_flight),
            ("restarts", worker.restarts),
        )
        if value is None
    ]
    if worker.name is None and not missing:
        return None
    text = Text("worker ", style="bold")
    if worker.name is not None:
        text.append_text(display_text(worker.name, limit=30, style="bold"))
        text.append("  ")
    text.append("id ")
    text.append_text(display_text(worker.id, limit=40))
    text.append(f"  up {short_duration(max(now_ms - worker.started_ms, 0))}  last seen ")
    text.append_text(beat_text(worker, now_ms))
    text.append(" ago")
    if missing:
        text.append(f"  not recorded: {', '.join(missing)}", style="dim")
    return text


class WorkersTable(KeyedTable):
    """Rows keyed by queue and worker id; unattended queues first."""

    COLUMNS = ("queue", "host", "pid", "conc", "busy", "up", "rst", "beat")

    shown: dict[str, WorkerRow] | None = None
    """The workers on screen by row key."""

    @property
    def selected(self) -> WorkerRow | None:
        """The worker under the cursor (None on a queue flagged for having none)."""
        key = self.selected_key
        return None if key is None or self.shown is None else self.shown.get(key)

    def show(
        self, workers: Sequence[WorkerRow], flagged: Sequence[QueueSnapshot], now_ms: int
    ) -> None:
        """Replace the rows, keeping the cursor on the same index."""
        row = self.cursor_row
        self.clear()
        self.shown = {f"{w.queue}\0{w.id}": w for w in workers}
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
            busy = (worker.in_flight or 0) >= (worker.concurrency or 0) > 0
            in_flight = known(worker.in_flight)
            if busy:
                in_flight.stylize("bold")
            restarts = known(worker.restarts)
            if worker.restarts is not None:
                restarts = Text(
                    compact(worker.restarts), style="yellow" if worker.restarts else "dim"
                )
            self.add_row(
                display_text(worker.queue, limit=16, say_how_much=False),
                display_text(worker.host, limit=16, say_how_much=False),
                known(worker.pid),
                known(worker.concurrency),
                in_flight,
                Text(short_duration(max(now_ms - worker.started_ms, 0))),
                restarts,
                beat_text(worker, now_ms),
                key=f"{worker.queue}\0{worker.id}",
            )
        if self.row_count:
            self.move_cursor(row=min(row, self.row_count - 1))
