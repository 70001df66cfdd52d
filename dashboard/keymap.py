"""The one key table: it feeds each screen's bindings, the footer, ``?`` help and the palette."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from textual.binding import Binding, BindingType


@dataclass(frozen=True, slots=True)
class Key:
    """One key binding: keys, the action it runs, and what it does in a few words."""

    keys: str
    action: str
    description: str
    show: bool = True
    mutates: bool = False
    """Changes Redis: hidden and refused in read-only mode."""
    priority: bool = False


APP_KEYS: tuple[Key, ...] = (
    Key("question_mark", "help", "Help"),
    Key("f", "toggle_freeze", "Freeze"),
    Key("g", "goto_job", "Go to job", show=False),
    Key("ctrl+c", "quit", "Quit", show=False, priority=True),
)

OVERVIEW_KEYS: tuple[Key, ...] = (
    Key("enter", "open_queue", "Open"),
    Key("j", "cursor('down')", "Down", show=False),
    Key("k", "cursor('up')", "Up", show=False),
    Key("p", "toggle_pause", "Pause/resume", mutates=True),
    Key("R", "retry_all", "Retry all failed", show=False, mutates=True),
    Key("b", "breaker(False)", "Close circuit breaker", show=False, mutates=True),
    Key("B", "breaker(True)", "Remove circuit breaker", show=False, mutates=True),
    Key("s", "stalled", "Stalled", show=False),
    Key("w", "workers", "Workers"),
    Key("S", "schedulers", "Schedulers", show=False),
    Key("D", "dead_letters", "Dead letters", show=False),
    Key("a", "toggle_chart_scope", "Chart: this queue / all", show=False),
    Key("K", "enable_notifications", "Turn on live updates", show=False, mutates=True),
    Key("q", "quit", "Quit"),
)

QUEUE_KEYS: tuple[Key, ...] = (
    *(
        Key(str(n), f"show_state({n - 1})", label, show=False)
        for n, label in enumerate(
            (
                "Wait",
                "Active",
                "Delayed",
                "Prioritized",
                "Failed",
                "Completed",
                "Paused",
                "Waiting children",
            ),
            start=1,
        )
    ),
    Key("enter", "open_job", "Open"),
    Key("j", "cursor('down')", "Down", show=False),
    Key("k", "cursor('up')", "Up", show=False),
    Key("n,right_square_bracket", "page(1)", "Next"),
    Key("slash", "filter", "Filter"),
    Key("N,left_square_bracket", "page(-1)", "Prev page", show=False),
    Key("r", "retry_job", "Retry", mutates=True),
    Key("R", "retry_all", "Retry all", show=False, mutates=True),
    Key("d", "discard_job", "Discard", mutates=True),
    Key("P", "promote_job", "Promote", show=False, mutates=True),
    Key("A", "promote_all", "Promote all delayed", show=False, mutates=True),
    Key("o", "change_priority", "Change priority", show=False, mutates=True),
    Key("x", "cancel_job", "Cancel job", show=False, mutates=True),
    Key("p", "toggle_pause", "Pause", show=False, mutates=True),
    Key("b", "breaker(False)", "Close circuit breaker", show=False, mutates=True),
    Key("B", "breaker(True)", "Remove circuit breaker", show=False, mutates=True),
    Key("c", "clean", "Clean", show=False, mutates=True),
    Key("s", "stalled", "Stalled", show=False),
    Key("t", "flow", "Flow of the job", show=False),
    Key("w", "workers", "Workers", show=False),
    Key("S", "schedulers", "Schedulers", show=False),
    Key("D", "dead_letters", "Dead letters", show=False),
    Key("escape,q", "back", "Back"),
)

DEAD_LETTER_KEYS: tuple[Key, ...] = (
    Key("enter", "open_job", "Open"),
    Key("space", "toggle_mark", "Mark"),
    Key("r", "replay", "Replay", mutates=True),
    Key("R", "replay_all", "Replay all", mutates=True),
    Key("j", "cursor('down')", "Down", show=False),
    Key("k", "cursor('up')", "Up", show=False),
    Key("n,right_square_bracket", "page(1)", "Next page", show=False),
    Key("N,left_square_bracket", "page(-1)", "Prev page", show=False),
    Key("escape,q", "back", "Back"),
)

STALLED_KEYS: tuple[Key, ...] = (
    Key("T", "set_stuck_after", "Stuck threshold"),
    Key("j", "cursor('down')", "Down", show=False),
    Key("k", "cursor('up')", "Up", show=False),
    Key("escape,q", "back", "Back"),
)

PROGRESS_KEYS: tuple[Key, ...] = (
    Key("escape,c", "stop", "Stop after this batch (close when done)"),
    Key("enter", "close", "Close when done"),
)
"""While a bulk action runs (its progress modal)."""

JOB_KEYS: tuple[Key, ...] = (
    Key("r", "retry_job", "Retry", mutates=True),
    Key("d", "discard_job", "Discard", mutates=True),
    Key("P", "promote_job", "Promote", mutates=True),
    Key("o", "change_priority", "Change priority", show=False, mutates=True),
    Key("x", "cancel_job", "Cancel job", show=False, mutates=True),
    Key("m", "more", "Next part"),
    Key("M", "less", "Previous part", show=False),
    Key("t", "flow", "Flow", show=False),
    Key("u", "open_parent", "Open parent", show=False),
    Key("enter", "open_link", "Open linked job", show=False),
    Key("escape,q", "back", "Back"),
)

FLOW_KEYS: tuple[Key, ...] = (
    Key("enter", "open_job", "Open job"),
    Key("space", "toggle_node", "Expand"),
    Key("j", "cursor('down')", "Down", show=False),
    Key("k", "cursor('up')", "Up", show=False),
    Key("escape,q", "back", "Back"),
)

WORKERS_KEYS: tuple[Key, ...] = (
    Key("a", "toggle_all", "All queues / this one"),
    Key("j", "cursor('down')", "Down", show=False),
    Key("k", "cursor('up')", "Up", show=False),
    Key("escape,q", "back", "Back"),
)

SCHEDULERS_KEYS: tuple[Key, ...] = (
    Key("enter", "open_last_job", "Open last job"),
    Key("j", "cursor('down')", "Down", show=False),
    Key("k", "cursor('up')", "Up", show=False),
    Key("n,right_square_bracket", "page(1)", "Next page", show=False),
    Key("N,left_square_bracket", "page(-1)", "Prev page", show=False),
    Key("escape,q", "back", "Back"),
)

MUTATING_ACTIONS = frozenset(
    key.action.partition("(")[0]  # the name Textual's check_action gets, without arguments
    for table in (OVERVIEW_KEYS, QUEUE_KEYS, JOB_KEYS, DEAD_LETTER_KEYS)
    for key in table
    if key.mutates
)


def bindings(keys: Iterable[Key]) -> list[BindingType]:
    """Textual bindings for a table (read-only hiding happens in ``check_action``)."""
    return [
        Binding(k.keys, k.action, k.description, show=k.show, priority=k.priority) for k in keys
    ]


def visible(keys: Iterable[Key], read_only: bool) -> list[Key]:
    """The keys a user may press: without the mutating ones in read-only mode."""
    return [k for k in keys if not (read_only and k.mutates)]


def key_label(keys: str) -> str:
    """``"escape,q"`` -> ``"esc/q"``, for help text."""
    names = {
        "question_mark": "?",
        "escape": "esc",
        "right_square_bracket": "]",
        "left_square_bracket": "[",
        "slash": "/",
    }
    return "/".join(names.get(k, k) for k in keys.split(","))
