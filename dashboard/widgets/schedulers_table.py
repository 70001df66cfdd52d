"""Job schedulers: timing, time zone, next run (relative), runs and the last job's state; the
line under the table gives the highlighted one in full (exact next run in its zone, last job,
and the states of the jobs of the ticks before it, newest first)."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from rich.text import Text

from dashboard.model import SchedulerPage, SchedulerRow
from dashboard.sanitize import display_text, notice_text
from dashboard.widgets.format import compact, short_duration
from dashboard.widgets.keyed_table import KeyedTable
from dashboard.widgets.links_table import STATE_STYLES

DUE_SLACK_MS = 2_000
"""A next run this close to now (or past it) is shown as due, not as a countdown."""


def timing(row: SchedulerRow) -> str:
    """``every 5s`` or the cron pattern."""
    if row.every_ms is not None:
        return f"every {short_duration(row.every_ms)}"
    return row.pattern or "?"


def next_run(row: SchedulerRow, now_ms: int) -> Text:
    """``in 3m``, ``due``, ``late 2m`` (its job waits for a worker) or ``ended``."""
    if row.next_run_ms is None:
        return Text("ended", style="dim")
    ahead = row.next_run_ms - now_ms
    if ahead > DUE_SLACK_MS:
        return Text(f"in {short_duration(ahead)}")
    if ahead >= -DUE_SLACK_MS:
        return Text("due", style="bold")
    return Text(f"late {short_duration(-ahead)}", style="yellow")


def exact(ms: int, tz: str | None) -> str:
    """``2025-06-01 09:00:00 Europe/Paris``: the time in the scheduler's zone (UTC if none)."""
    try:
        zone = ZoneInfo(tz) if tz else UTC
    except (ZoneInfoNotFoundError, ValueError):
        zone = UTC
    when = datetime.fromtimestamp(ms / 1000, zone)
    return f"{when:%Y-%m-%d %H:%M:%S} {notice_text(tz or 'UTC', limit=40)}"


def last_state(row: SchedulerRow) -> Text:
    """The last job's state; ``gone`` once it was removed, ``-`` before the first job."""
    if row.last_job_id is None:
        return Text("-", style="dim")
    if row.last_job_state is None:
        return Text("gone", style="dim")
    return Text(row.last_job_state, style=STATE_STYLES.get(row.last_job_state, ""))


def describe(row: SchedulerRow, now_ms: int) -> Text:
    """Everything about one scheduler on one or two lines."""
    text = display_text(row.id, limit=40, style="bold")
    if row.malformed is not None:
        text.append("  unreadable record: ", style="bold red")
        text.append_text(display_text(row.malformed, limit=120))
        return text
    text.append("  job ")
    text.append_text(display_text(row.job_name, limit=30))
    text.append("  next ")
    if row.next_run_ms is None:
        text.append("none (ended)")
    else:
        text.append(exact(row.next_run_ms, row.tz))
        text.append(" (")
        text.append_text(next_run(row, now_ms))
        text.append(")")
    text.append(f"  runs {row.iterations}")
    if row.limit is not None:
        text.append(f"/{row.limit}")
    if row.end_date_ms is not None:
        text.append(f"  until {exact(row.end_date_ms, row.tz)}")
    text.append("  last job ")
    text.append_text(display_text(row.last_job_id or "none", limit=50))
    text.append(" ")
    text.append_text(last_state(row))
    if row.earlier_jobs:
        text.append("  before: ")
        for index, (_, state) in enumerate(row.earlier_jobs):
            if index:
                text.append(" ")
            shown = state or "gone"
            text.append(shown, style=STATE_STYLES.get(shown, "dim"))
    return text


class SchedulersTable(KeyedTable):
    """Rows keyed by scheduler id."""

    COLUMNS = ("scheduler", "timing", "tz", "next", "runs", "last job")

    def __init__(self, **kwargs: str) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.page: SchedulerPage | None = None

    @property
    def selected(self) -> SchedulerRow | None:
        """The scheduler under the cursor."""
        key = self.selected_key
        if self.page is None or key is None:
            return None
        return next((row for row in self.page.rows if row.id == key), None)

    def show(self, page: SchedulerPage) -> None:
        """Replace the rows, keeping the cursor on the same scheduler."""
        selected = self.selected_key
        self.page = page
        self.clear()
        for row in page.rows:
            if row.malformed is not None:
                cells = [Text("unreadable", style="bold red"), *(Text("") for _ in range(4))]
            else:
                cells = [
                    display_text(timing(row), limit=16, say_how_much=False),
                    display_text(row.tz or "UTC", limit=14, say_how_much=False),
                    next_run(row, page.now_ms),
                    Text(compact(row.iterations)),
                    last_state(row),
                ]
            self.add_row(display_text(row.id, limit=18, say_how_much=False), *cells, key=row.id)
        ids = [row.id for row in page.rows]
        if selected in ids:
            self.move_cursor(row=ids.index(selected))
