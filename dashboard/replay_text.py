"""Words for replaying dead letters: the scope a confirmation names, and the outcome line."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from dashboard.model import JobRow, ReplayOutcome
from dashboard.sanitize import display_text, quoted

SKIPPED_SHOWN = 3
"""Dead letters left in place that the outcome line names one by one."""


def plural(n: int, word: str) -> str:
    """``1 dead letter``, ``2 dead letters``."""
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def origins(rows: Iterable[JobRow]) -> str:
    """``orders (2), mail (1)``: the origin queues of some dead letters, most first."""
    counted = Counter(row.origin_queue or "?" for row in rows)
    return ", ".join(f"{queue} ({n})" for queue, n in counted.most_common())


def replay_message(queue: str, outcome: ReplayOutcome) -> str:
    """One line: what went back where, and what stayed and why (inert: made visible, cut)."""
    return display_text(_message(queue, outcome), limit=300).plain


def _message(queue: str, outcome: ReplayOutcome) -> str:
    if len(outcome.replayed) == 1 and not outcome.skipped:
        ((dl_id, origin, origin_id),) = outcome.replayed
        return (
            f"replayed dead letter {quoted(dl_id)} to {quoted(origin)} as job {quoted(origin_id)}"
        )
    counted = Counter(origin for _, origin, _ in outcome.replayed)
    where = ", ".join(f"{name} ({n})" for name, n in counted.most_common())
    text = f"replayed {plural(len(outcome.replayed), 'dead letter')} of {quoted(queue)}"
    if where:
        text += f" to {where}"
    if outcome.skipped:
        shown = "; ".join(f"{dl_id}: {why}" for dl_id, why in outcome.skipped[:SKIPPED_SHOWN])
        more = len(outcome.skipped) - SKIPPED_SHOWN
        text += f"; {len(outcome.skipped)} stayed ({shown}{f'; +{more} more' if more > 0 else ''})"
    return text
