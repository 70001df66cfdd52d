"""Where BullMQ 5 and 6 agree: which actions the pinned ``bullmq`` package's scripts (those of
BullMQ 6) may run on a queue of a given layout, and why not elsewhere (BULLMQ-LAYOUT.md §13).

BullMQ 6 pauses with the ``paused`` flag of ``meta`` alone and keeps a paused queue's jobs in
``wait``; BullMQ 5 also renames ``wait`` to ``paused``, adds to ``paused`` while paused, and its
resume renames ``paused`` over ``wait``. So on a queue BullMQ 5 clients may use:

- pausing with v6 scripts is refused: jobs left in ``wait`` would be lost at a v5 resume;
- resuming agrees (the v6 script renames ``paused`` to ``wait`` as v5 does), unless both lists
  hold jobs;
- retry, promote and priority changes agree while the queue runs; while it is paused the v6
  scripts would put jobs in ``wait``, which v5 never reads while paused and renames over at
  resume, so they are refused;
- discarding and cleaning agree everywhere (both look for a job in every list).

A queue whose structure shows both majors at work (``QueueLayout.mixed``) is paused, resumed and
given ready jobs by neither.
"""

from __future__ import annotations

from enum import StrEnum

from dashboard.bullmq.layout import PauseStyle, QueueLayout


class Change(StrEnum):
    """What an action does to a queue's lists, as far as pausing is concerned."""

    PAUSE = "pause"
    RESUME = "resume"
    READY = "ready"
    """Puts jobs in ``wait`` or ``prioritized``: retry, promote, change priority."""
    REMOVE = "remove"
    """Deletes jobs wherever they are: discard, clean."""


def refusal(what: str, change: Change, queue: str, layout: QueueLayout) -> str | None:
    """Why ``what`` must not run on ``queue`` with BullMQ 6 scripts, or None if it may."""
    if change is Change.REMOVE:
        return None
    if layout.mixed:
        return (
            f"{what} refused: queue {queue!r} looks written by BullMQ 5 and 6 clients at once "
            f"({layout.reason}); pausing, resuming or readying its jobs could lose some"
        )
    if change is Change.RESUME or layout.pause_style is PauseStyle.FLAG:
        return None
    if change is Change.PAUSE:
        if layout.pause_style is PauseStyle.LIST:
            who = f"queue {queue!r} is a BullMQ 5 queue ({layout.reason})"
        else:
            who = f"queue {queue!r} records no BullMQ version, so BullMQ 5 clients may use it"
        return (
            f"pause refused: {who}; the bullmq package runs BullMQ 6 scripts, which pause with "
            "a flag and leave the jobs in wait, but BullMQ 5 clients add to the paused list "
            "then, and their resume renames it over wait: the jobs in wait would be lost"
        )
    if not layout.paused:
        return None
    style = "the BullMQ 5 way" if layout.pause_style is PauseStyle.LIST else "by an unknown version"
    return (
        f"{what} refused: queue {queue!r} is paused {style}; BullMQ 6 scripts would put the job "
        "in wait, which BullMQ 5 does not read while paused and overwrites at resume. Resume "
        "the queue first"
    )
