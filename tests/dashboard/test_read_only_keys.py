"""Read-only mode at 80x24 on a private server: the promote, clean, cancel and promote-all keys
of the queue screen and the dead-letter replay keys do nothing (no question, no action), the
action layer refuses them when reached another way, and the server sees not one write."""

from __future__ import annotations

from pathlib import Path

import pytest
from pilot import SIZE, notices, until, visible_text
from support.audit import CommandAudit
from support.server import FaultServer
from workload import dead_letter, finish_jobs

from dashboard.app import DashboardApp
from dashboard.corral_backend import CorralBackend
from dashboard.keymap import QUEUE_KEYS
from dashboard.screens.confirm import ConfirmScreen
from dashboard.screens.dead_letters import DeadLettersScreen
from dashboard.screens.prompt import PromptScreen
from dashboard.screens.queue import QueueScreen
from engine.queue import Queue

pytestmark = pytest.mark.timeout(90)

QUEUE, DLQ = "orders", "orders-dead"


def _asked(app: DashboardApp) -> bool:
    return any(isinstance(s, ConfirmScreen | PromptScreen) for s in app.screen_stack)


async def test_read_only_keys_do_nothing_and_write_nothing(
    fresh_server: FaultServer, audit_path: Path
) -> None:
    url = fresh_server.url
    async with Queue(QUEUE, url) as queue, Queue(DLQ, url) as dlq:
        await queue.add("later", {}, job_id="d0", delay=3_600_000)
        await queue.add("later", {}, job_id="d1", delay=3_600_000)
        await queue.add_bulk([("send", {}) for _ in range(2)])
        await finish_jobs(queue, complete=2, fail=0)
        await dead_letter(queue, dlq, url, 2)
    app = DashboardApp(url, CorralBackend(), queues=[QUEUE, DLQ], read_only=True, poll_interval=0.2)
    async with CommandAudit(url) as audit, app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.snapshot is not None and len(app.snapshot.queues) == 2)
        await pilot.press("enter", "3")  # the first queue (orders), its delayed tab
        await until(pilot, lambda: isinstance(app.screen, QueueScreen))
        screen = app.screen
        assert isinstance(screen, QueueScreen)
        await until(pilot, lambda: screen.page is not None and len(screen.page.rows) == 2)
        assert "READ-ONLY" in visible_text(app)
        for key in ("P", "x", "A", "c"):  # promote, cancel, promote all, clean
            assert not screen.check_action(_action_of(key), ())  # hidden from the footer
            await pilot.press(key)
            await pilot.pause(0.2)
            assert app.screen is screen and not _asked(app), key
        await pilot.press("6", "c")  # clean from the completed tab too
        await pilot.pause(0.2)
        assert app.screen is screen and not _asked(app)

        await pilot.press("escape", "D")  # the dead letters: mark, replay one, replay all
        await until(pilot, lambda: isinstance(app.screen, DeadLettersScreen))
        letters = app.screen
        assert isinstance(letters, DeadLettersScreen)
        await until(pilot, lambda: letters.page is not None and len(letters.page.rows) == 2)
        assert "Replay" not in visible_text(app).splitlines()[-1]  # not offered in the footer
        await pilot.press("space", "r", "R")
        await pilot.pause(0.2)
        assert app.screen is letters and not _asked(app)

        # reached another way (the palette, a binding added later): refused where they run
        app.confirm_promote_all(QUEUE)
        app.confirm_replay_all(DLQ)
        app.confirm_clean(QUEUE, "completed")
        app.confirm_job_action("promote", QUEUE, "d0")
        app.confirm_job_action("cancel", QUEUE, "d1")
        await pilot.pause(0.3)
        assert app.screen is letters and not _asked(app)
        assert notices(app).count("read-only mode: actions are off") >= 5
    audit.assert_no_writes()
    assert not _written(audit_path)  # no action ran, so none was audited
    async with Queue(QUEUE, url) as queue, Queue(DLQ, url) as dlq:
        assert await queue.get_counts("delayed", "completed") == {"delayed": 2, "completed": 2}
        assert (await dlq.get_counts("failed"))["failed"] == 2


def _written(path: Path) -> bool:
    return path.exists()


def _action_of(key: str) -> str:
    """The action a queue-screen key runs, without its arguments."""
    (action,) = [k.action for k in QUEUE_KEYS if key in k.keys.split(",")]
    return action.partition("(")[0]
