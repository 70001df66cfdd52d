"""Z1 (RELIABILITY.md 3.1): the whole app, read-only, as an ACL user that may only read. Every
screen opens and every key of every key table is pressed: each one works or is hidden; no error
is shown; the server runs no write command; and its ``ACL LOG`` stays empty (it refused nothing).

The user's rules, and why each is there (nothing else is granted):

- ``~corral:*``: Corral's keys only;
- ``+@read``: every read the dashboard makes (SCAN, RANDOMKEY, EXISTS, LLEN, ZCARD, HMGET,
  LINDEX, bounded LRANGE/ZRANGE, LPOS, XREAD, XINFO...);
- ``+@connection`` then ``-@dangerous``: the handshake redis-py sends on each connection (PING,
  CLIENT SETINFO), without CLIENT LIST, KILL or PAUSE;
- ``+info`` (after ``-@dangerous``, which holds it): ``INFO memory``, the eviction policy read at
  each connect (R5);
- ``+time``: the server clock the counts use (TIME is in ``@fast`` only, not ``@read``);
- ``+psubscribe +punsubscribe`` on ``&__keyspace@0__:corral:{*}:meta``: the keyspace
  notifications the monitor listens to as hints (a queue created, paused or resumed). The server
  allows a PSUBSCRIBE pattern only if it equals an allowed pattern literally, so this is the
  monitor's own pattern (``&__keyspace@0__:corral:*`` would refuse it). It never SUBSCRIBEs, so
  there is no ``+subscribe``.

Not granted: CONFIG (a read-only monitor never reads ``notify-keyspace-events``: it listens and
sees), CLIENT LIST (only ``--bullmq``'s workers view needs it), and every write and script call.
"""

from __future__ import annotations

from typing import Any

import pytest
from pilot import SIZE, until
from support.audit import CommandAudit, raw_command
from support.populate import every_state
from support.server import FaultServer
from textual.command import CommandPalette
from textual.pilot import Pilot
from textual.screen import Screen
from workload import dead_letter

from dashboard.app import DashboardApp
from dashboard.corral_backend import CorralBackend
from dashboard.keymap import (
    APP_KEYS,
    DEAD_LETTER_KEYS,
    FLOW_KEYS,
    JOB_KEYS,
    OVERVIEW_KEYS,
    QUEUE_KEYS,
    SCHEDULERS_KEYS,
    STALLED_KEYS,
    WORKERS_KEYS,
    Key,
)
from dashboard.model import Mode
from dashboard.screens.confirm import ConfirmScreen
from dashboard.screens.dead_letters import DeadLettersScreen
from dashboard.screens.flow import FlowScreen
from dashboard.screens.help import HelpScreen
from dashboard.screens.job import JobScreen
from dashboard.screens.overview import OverviewScreen
from dashboard.screens.prompt import PromptScreen
from dashboard.screens.queue import QueueScreen
from dashboard.screens.schedulers import SchedulersScreen
from dashboard.screens.stalled import StalledScreen
from dashboard.screens.workers import WorkersScreen
from engine import FlowProducer, Queue

pytestmark = pytest.mark.timeout(120)

QUEUE, DLQ, OTHER = "orders", "orders-dead", "orders-other"
RO_USER, RO_SECRET = "corral-viewer", "viewer-secret"
RO_RULES = (
    "reset", "on", f">{RO_SECRET}", "~corral:*", "&__keyspace@0__:corral:{*}:meta",
    "+@read", "+@connection", "-@dangerous", "+info", "+time", "+psubscribe", "+punsubscribe",
)  # fmt: skip

ScreenType = type[Screen[Any]]

TABLES: dict[str, tuple[Key, ...]] = {
    "app": APP_KEYS,
    "overview": OVERVIEW_KEYS,
    "queue": QUEUE_KEYS,
    "job": JOB_KEYS,
    "flow": FLOW_KEYS,
    "stalled": STALLED_KEYS,
    "workers": WORKERS_KEYS,
    "schedulers": SCHEDULERS_KEYS,
    "dead letters": DEAD_LETTER_KEYS,
}
"""Every key table a read-only user can reach. Not here: ``PROGRESS_KEYS`` (the modal of a bulk
action, which read-only mode never starts)."""
NOT_PRESSED = {("app", "ctrl+c")}
"""Quits, as ``q`` on the overview does (pressed last)."""

OPENS: dict[str, ScreenType] = {
    "open_queue": QueueScreen,
    "open_job": JobScreen,
    "open_last_job": JobScreen,
    "open_link": JobScreen,
    "open_parent": JobScreen,
    "stalled": StalledScreen,
    "workers": WorkersScreen,
    "schedulers": SchedulersScreen,
    "dead_letters": DeadLettersScreen,
    "flow": FlowScreen,
    "help": HelpScreen,
    "goto_job": PromptScreen,
    "set_stuck_after": PromptScreen,
}
"""Actions that open a screen (each walk arranges for something to open); the others stay."""
TABLE_OF: dict[ScreenType, str] = {
    QueueScreen: "queue",
    JobScreen: "job",
    FlowScreen: "flow",
    StalledScreen: "stalled",
    WorkersScreen: "workers",
    SchedulersScreen: "schedulers",
    DeadLettersScreen: "dead letters",
}
"""The key table of each screen (the Escape that closes one is its back key)."""


async def _workload(url: str) -> str:
    """Dead letters (from a real worker), then jobs in every state, a job scheduler and a
    flow whose parent waits for three children; returns the id of a child."""
    async with Queue(QUEUE, url, max_events=100) as queue, Queue(DLQ, url) as dlq:
        await dead_letter(queue, dlq, url, 2)
        await every_state(queue)
        await queue.upsert_job_scheduler("tick", every=60_000)
    leaf = {"name": "leaf", "queue": QUEUE}
    async with FlowProducer(url) as producer:
        root = await producer.add(
            {
                "name": "parent",
                "queue": QUEUE,
                "children": [
                    {"name": "child", "queue": QUEUE, "children": [leaf]},
                    {"name": "child", "queue": QUEUE},
                    {"name": "elsewhere", "queue": OTHER},
                ],
            }
        )  # fmt: skip
    return root.children[0].ref.id


class Walk:
    """Presses keys on the app and records which key of which table was pressed."""

    def __init__(self, pilot: Pilot[None], app: DashboardApp) -> None:
        self.pilot = pilot
        self.app = app
        self.pressed: set[tuple[str, str]] = set()

    def errors(self) -> list[str]:
        return [str(n.message) for n in self.app._notifications if n.severity == "error"]

    async def key(self, table: str, name: str, opens: ScreenType | None = None) -> None:
        """Press ``name``; it opens ``opens`` (then Escape comes back), or the screen stays
        and asks nothing."""
        home = self.app.screen
        await self.pilot.press(name)
        self.pressed.add((table, name))
        if opens is None:
            await self.pilot.pause(0.1)
            assert self.app.screen is home, f"{name} on {table} opened {self.app.screen!r}"
        else:
            await until(self.pilot, lambda: isinstance(self.app.screen, opens))
            assert not isinstance(self.app.screen, ConfirmScreen)
            await self.pilot.pause(0.2)  # let it read what it shows
            if (opened := TABLE_OF.get(type(self.app.screen))) is not None:
                self.pressed.add((opened, "escape"))
            await self.pilot.press("escape")
            await until(self.pilot, lambda: self.app.screen is home)
        assert not self.errors(), self.errors()

    async def every_key(self, table: str) -> None:
        """Each key of ``table`` but going back, on the screen on top."""
        for entry in TABLES[table]:
            action = entry.action.partition("(")[0]
            for name in entry.keys.split(","):
                if action in ("back", "quit"):
                    continue
                if action == "filter":
                    await self.filter(table, name)
                elif action == "toggle_freeze":  # frozen, then live again
                    await self.key(table, name)
                    await self.key(table, name)
                elif action == "show_state":
                    await self.tab(table, name)
                elif entry.mutates:  # hidden in read-only mode: nothing happens
                    assert not self.app.screen.check_action(action, ())
                    await self.key(table, name)
                else:
                    await self.key(table, name, OPENS.get(action))

    async def tab(self, table: str, name: str) -> None:
        """A state tab of the queue screen, until its first page is shown."""
        await self.key(table, name)
        screen = self.app.screen
        assert isinstance(screen, QueueScreen)
        state = screen.state
        await until(self.pilot, lambda: screen.page is not None and screen.page.state == state)

    async def filter(self, table: str, name: str) -> None:
        """``/``, a letter, Escape: the filter box opens, filters, and clears."""
        home = self.app.screen
        await self.pilot.press(name, "b")
        await self.pilot.pause(0.1)
        await self.pilot.press("escape")
        await self.pilot.pause(0.1)
        assert self.app.screen is home
        self.pressed.add((table, name))

    async def open(self, table: str, name: str, screen: ScreenType) -> None:
        """Press ``name`` and stay on the ``screen`` it opens."""
        await self.pilot.press(name)
        self.pressed.add((table, name))
        await until(self.pilot, lambda: isinstance(self.app.screen, screen))
        await self.pilot.pause(0.2)

    async def back(self, table: str, name: str = "q") -> None:
        """Leave the screen on top with its back key."""
        top = self.app.screen
        await self.pilot.press(name)
        self.pressed.add((table, name))
        await until(self.pilot, lambda: self.app.screen is not top)


async def _walk_queue_tabs(walk: Walk, app: DashboardApp) -> None:
    """Each state tab, and the first job of each tab that has one."""
    screen = app.screen
    assert isinstance(screen, QueueScreen)
    for digit in "12345678":
        await walk.tab("queue", digit)
        if screen.page is not None and screen.page.rows:
            await walk.key("queue", "enter", JobScreen)


async def test_read_only_acl_user_walks_every_screen_and_key(fresh_server: FaultServer) -> None:
    url = fresh_server.url
    child = await _workload(url)
    async with Queue(QUEUE, url) as admin:
        await raw_command(admin.client, "ACL", "SETUSER", RO_USER, *RO_RULES)
    viewer = url.replace("redis://", f"redis://{RO_USER}:{RO_SECRET}@")
    app = DashboardApp(viewer, CorralBackend(), read_only=True, poll_interval=0.2)
    async with CommandAudit(url) as audit, app.run_test(size=SIZE) as pilot:
        walk = Walk(pilot, app)
        await until(
            pilot,
            lambda: (
                app.snapshot is not None
                and {q.name for q in app.snapshot.queues} >= {QUEUE, DLQ, OTHER}
            ),
        )
        overview = app.screen
        assert isinstance(overview, OverviewScreen)
        await walk.every_key("overview")  # the cursor is on "orders", the first queue
        await walk.every_key("app")

        await pilot.press("ctrl+p")  # the palette runs a read, and offers no action
        await until(pilot, lambda: isinstance(app.screen, CommandPalette))
        await pilot.press(*"Workers")
        await pilot.pause(0.3)
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, WorkersScreen))
        await pilot.press("escape")
        await until(pilot, lambda: app.screen is overview)

        await walk.open("overview", "enter", QueueScreen)
        await _walk_queue_tabs(walk, app)
        await walk.tab("queue", "5")  # the failed tab: a job under the cursor for every key
        await walk.every_key("queue")
        await walk.every_key("app")
        await walk.back("queue")

        await walk.open("app", "g", PromptScreen)  # go to a child of the flow: a parent, links
        await pilot.press(*child, "enter")
        await until(pilot, lambda: isinstance(app.screen, JobScreen))
        await pilot.pause(0.3)
        await walk.every_key("job")
        await walk.open("job", "t", FlowScreen)
        await walk.every_key("flow")
        await walk.back("flow")
        await walk.back("job")

        for key, screen, table in (
            ("s", StalledScreen, "stalled"),
            ("w", WorkersScreen, "workers"),
            ("S", SchedulersScreen, "schedulers"),
            ("D", DeadLettersScreen, "dead letters"),
        ):
            await walk.open("overview", key, screen)
            await walk.every_key(table)
            await walk.back(table)
            await until(pilot, lambda: app.screen is overview)

        snapshot = app.snapshot
        assert snapshot is not None and snapshot.error is None
        assert snapshot.mode is Mode.POLLING  # notifications are off, and it never asked
        await pilot.press("q")  # quits
        walk.pressed.add(("overview", "q"))
        await pilot.pause(0.2)
    assert app.return_code == 0

    missed = (
        {
            (table, name)
            for table, keys in TABLES.items()
            for entry in keys
            for name in entry.keys.split(",")
        }
        - walk.pressed
        - NOT_PRESSED
    )
    assert not missed, f"keys never pressed: {sorted(missed)}"
    assert audit.acl_log == [], [
        (e.get("object"), e.get("reason"), e.get("username")) for e in audit.acl_log
    ]
    audit.assert_no_writes()
    assert not audit.writes() and audit.calls()["scan"] >= 1
