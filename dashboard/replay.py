"""Asking before dead letters are replayed: one, or the marked ones, with the exact scope.

A dead-letter queue's failed jobs are dead letters; ``r`` on one (in any view) replays it to the
queue it came from, with fresh attempts, instead of retrying it inside the dead-letter queue.
More than one needs the dead-letter queue's name typed. ``R`` (all of them) is a bulk action
over the exact ids seen (``dashboard.bulk_asks``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from rich.text import Text

from dashboard.model import JobRow
from dashboard.replay_text import origins, plural
from dashboard.sanitize import display_text, notice_text

if TYPE_CHECKING:
    from dashboard.app import DashboardApp

IDS_SHOWN = 5
"""Dead-letter ids a confirmation lists one by one."""


def is_dead_letter_queue(app: DashboardApp, queue: str) -> bool:
    """True when the latest snapshot says ``queue`` is a dead-letter queue."""
    snapshot = app.snapshot.queue(queue) if app.snapshot is not None else None
    return snapshot is not None and snapshot.dead_letter


def confirm_replay(app: DashboardApp, queue: str, rows: Sequence[JobRow]) -> None:
    """Ask, then replay exactly ``rows`` (dead letters of ``queue``) to their origin queues."""
    ids = [row.id for row in rows]
    if not ids:
        app.notify("no dead letter selected", severity="warning")
        return
    if len(rows) == 1:
        row = rows[0]
        body = Text.assemble(
            "Replay dead letter ",
            display_text(row.id, limit=30),
            " of queue ",
            display_text(queue, limit=40),
            " to queue ",
            display_text(row.origin_queue or "?", limit=40),
            " (as job ",
            display_text(row.origin_id or "?", limit=30),
            ") with fresh attempts?",
        )
        app._ask("Replay dead letter", body, "Replay", lambda: app.actions.replay(queue, ids))
        return
    shown = ", ".join(ids[:IDS_SHOWN]) + (f" +{len(ids) - IDS_SHOWN} more" * (len(ids) > IDS_SHOWN))
    body = Text.assemble(
        f"Replay {plural(len(ids), 'dead letter')} of queue ",
        display_text(queue, limit=40),
        " (ids ",
        display_text(shown, limit=60),
        ") to their origin queues ",
        display_text(origins(rows), limit=80),
        ", with fresh attempts, in bounded batches?",
    )
    app._ask("Replay dead letters", body, "Replay", lambda: app.actions.replay(queue, ids), queue)


async def confirm_replay_ids(app: DashboardApp, queue: str, ids: Sequence[str]) -> None:
    """Read where each dead letter came from (for the confirmation), then ask."""
    rows = []
    for dl_id in ids:
        detail = await app.read_job(queue, dl_id)
        if detail is None:
            gone = notice_text(f"dead letter {dl_id!r} no longer exists")
            app.notify(gone, severity="warning", markup=False)
            continue
        raw = dict(detail.raw)
        rows.append(
            JobRow(
                id=dl_id,
                state="failed",
                name=detail.name,
                origin_queue=raw.get("origin_queue"),
                origin_id=raw.get("origin_id"),
            )
        )
    if rows:
        confirm_replay(app, queue, rows)
