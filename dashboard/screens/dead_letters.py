"""Dead letters of one dead-letter queue, a page at a time: where each came from, its name,
when it failed, attempts and reason; ``r`` replays the marked ones (space) or the one under the
cursor, ``R`` all of them, each to its origin queue with fresh attempts (confirmed)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.widgets import Static

from dashboard.keymap import DEAD_LETTER_KEYS, bindings
from dashboard.model import DashboardSnapshot, JobPage
from dashboard.replay import confirm_replay
from dashboard.replay_text import plural
from dashboard.sanitize import display_text, notice_text
from dashboard.screens.base import DashScreen
from dashboard.widgets.dead_letters_table import DeadLettersTable
from dashboard.widgets.key_bar import KeyBar

if TYPE_CHECKING:
    from dashboard.app import DashboardApp

PAGE_SIZE = 50


class DeadLettersScreen(DashScreen):
    """The failed jobs of a dead-letter queue, shown as dead letters."""

    KEYS = DEAD_LETTER_KEYS
    BINDINGS = bindings(DEAD_LETTER_KEYS)

    def __init__(self, queue: str) -> None:
        super().__init__()
        self.queue = queue
        self.start = 0
        self.page: JobPage | None = None
        self._count_seen: int | None = None

    def compose(self) -> ComposeResult:
        """Status bar, title, page line, table, footer."""
        yield self.status_bar()
        yield Static(display_text(f"dead letters of {self.queue}", limit=70), id="queue-title")
        yield Static("", id="page-line")
        yield DeadLettersTable(id="dead-letters")
        yield KeyBar()

    def on_mount(self) -> None:
        """First page."""
        self.query_one(DeadLettersTable).focus()
        self.load_page()

    def show_snapshot(self, snapshot: DashboardSnapshot) -> None:
        """Reload the page when the number of dead letters changed."""
        super().show_snapshot(snapshot)
        queue = snapshot.queue(self.queue)
        if queue is None:
            return
        count = queue.counts.failed
        if self._count_seen is not None and count != self._count_seen:
            self.load_page()
        self._count_seen = count

    @work(exclusive=True, group="page", exit_on_error=False)
    async def load_page(self) -> None:
        """Read the current page (bounded) and show it."""
        page = await self.dash.read_page(self.queue, "failed", self.start, PAGE_SIZE)
        self.page = page
        table = self.query_one(DeadLettersTable)
        table.show(page)
        last = max(1, -(-page.total // PAGE_SIZE))
        first = page.start + 1 if page.rows else 0
        line = Text(
            f"{plural(page.total, 'dead letter')}: rows {first}-{page.end + 1}"
            f"  page {page.start // PAGE_SIZE + 1}/{last}"
        )
        if table.marked:
            line.append(f"  {len(table.marked)} marked", style="bold cyan")
        line.append("  (space: mark, r: replay, R: all)", style="dim")
        self.query_one("#page-line", Static).update(line)

    def action_cursor(self, direction: str) -> None:
        """``j``/``k`` move like the arrows."""
        table = self.query_one(DeadLettersTable)
        if direction == "down":
            table.action_cursor_down()
        else:
            table.action_cursor_up()

    def action_page(self, step: int) -> None:
        """Next (1) or previous (-1) page."""
        total = self.page.total if self.page else 0
        start = self.start + step * PAGE_SIZE
        if 0 <= start < max(total, 1):
            self.start = start
            self.load_page()

    def action_toggle_mark(self) -> None:
        """Mark the dead letter under the cursor for a replay of several."""
        self.query_one(DeadLettersTable).toggle_mark()
        self.load_page()

    def action_replay(self) -> None:
        """Replay the marked dead letters, or else the one under the cursor (confirmed)."""
        table = self.query_one(DeadLettersTable)
        rows = list(table.marked.values())
        if not rows and table.selected_row is not None:
            rows = [table.selected_row]
        confirm_replay(self.dash, self.queue, rows)

    def action_replay_all(self) -> None:
        """Replay the dead letters of the queue as they are now (typed confirmation)."""
        self.dash.confirm_replay_all(self.queue)

    def action_open_job(self) -> None:
        """Open the dead letter under the cursor (its data, stack trace and logs)."""
        row = self.query_one(DeadLettersTable).selected_row
        if row is not None:
            self.dash.open_job(self.queue, row.id)

    def on_data_table_row_selected(self) -> None:
        """Enter on a row opens it too."""
        self.action_open_job()

    def action_back(self) -> None:
        """Back."""
        self.dismiss()


def open_dead_letters(app: DashboardApp, queue: str | None) -> None:
    """The dead letters of ``queue`` if it is a dead-letter queue, else of the only one there
    is; a notice naming them when there are several, or none."""
    snapshot = app.snapshot
    queues = [q.name for q in snapshot.queues if q.dead_letter] if snapshot is not None else []
    if queue is not None and queue in queues:
        app.push_screen(DeadLettersScreen(queue))
    elif len(queues) == 1:
        app.push_screen(DeadLettersScreen(queues[0]))
    elif not queues:
        app.notify("no dead-letter queue found", markup=False)
    else:
        names = ", ".join(queues[:5]) + (" ..." if len(queues) > 5 else "")
        app.notify(notice_text(f"select a dead-letter queue first: {names}", 200), markup=False)
