"""Bulk actions act on what the operator saw: a bounded selection of ids and a stoppable run.

``select_jobs`` reads the ids of one state page by page when the confirmation opens (at most
``BULK_LIMIT``); ``BulkRun`` carries a run's progress and its stop flag, checked between batches
of ``BULK_BATCH``; ``selection_outcome`` says what happened, job by job category.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass

from redis.asyncio import Redis

from dashboard.backend import Backend
from dashboard.sanitize import quoted

BULK_LIMIT = 10_000
"""Most jobs one bulk action selects; the confirmation says so when a state holds more."""
BULK_BATCH = 100
"""Jobs per call: progress shows and a stop takes effect between batches."""
ID_PAGE = 1_000
"""Ids read per range read while selecting."""


@dataclass(frozen=True, slots=True)
class Selection:
    """The ids of ``state`` read when the operator was asked, and how many the state held."""

    queue: str
    state: str
    ids: tuple[str, ...]
    total: int

    @property
    def capped(self) -> bool:
        """The state held more jobs than were selected."""
        return self.total > len(self.ids)


async def select_jobs(
    backend: Backend, client: Redis, queue: str, state: str, limit: int = BULK_LIMIT
) -> Selection:
    """Up to ``limit`` ids of ``state`` in page order (newest first for finished states), read
    ``ID_PAGE`` at a time; an id seen twice (the list moved between reads) counts once."""
    total = (await backend.read_page(client, queue, state, 0, 1)).total
    ids: dict[str, None] = {}
    for start in range(0, 2 * limit, ID_PAGE):  # bounded even if the state keeps growing
        page = await backend.read_job_ids(client, queue, state, start, ID_PAGE)
        ids.update(dict.fromkeys(page))
        if len(page) < ID_PAGE or len(ids) >= limit:
            break
    chosen = tuple(ids)[:limit]
    return Selection(queue=queue, state=state, ids=chosen, total=max(total, len(chosen)))


class BulkRun:
    """How far a bulk action got, and whether the operator asked it to stop."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.done = 0
        self.stop_requested = False

    def advance(self, count: int) -> None:
        """``count`` more jobs were handled."""
        self.done += count

    def stop(self) -> None:
        """Stop before the next batch (the running one completes: each batch is atomic)."""
        self.stop_requested = True


def _plural(count: int, word: str) -> str:
    return f"{count:,} {word}{'' if count == 1 else 's'}"


def selection_outcome(
    done: str, selection: Selection, attempted: int, missed: Mapping[str, str | None]
) -> str:
    """E.g. "retried 8 failed jobs of 'q'; 2 not retried: 1 now completed, 1 no longer
    exists" (``done`` is the verb: "retried", "promoted"); ``missed`` maps the jobs that were
    not in the state seen any more to the state they are in now (None: gone)."""
    acted = attempted - len(missed)
    text = f"{done} {_plural(acted, selection.state + ' job')} of {quoted(selection.queue)}"
    if missed:
        why = Counter(
            f"now {state}" if state is not None else "no longer exists" for state in missed.values()
        )
        reasons = ", ".join(f"{n:,} {reason}" for reason, n in sorted(why.items()))
        text += f"; {len(missed):,} not {done}: {reasons}"
    return text + stopped_note(len(selection.ids) - attempted)


def stopped_note(left: int) -> str:
    """``"; stopped: 12 not attempted"`` when a run was stopped before its end, else ``""``."""
    return f"; stopped: {left:,} not attempted" if left > 0 else ""
