"""Z2 (RELIABILITY.md 3.1): the dashboard pointed at a read-only replica (``replica-read-only
yes``) of a primary that runs a real engine workload (``Queue`` adds, an in-process ``Worker``).

In read-only and in write mode: the counts and the job lists follow the primary's workload, live
(a replica sends keyspace notifications for the writes its primary replicates, when its own
``notify-keyspace-events`` says so), a job's detail opens, no error shows, and the replica runs
no write command from the dashboard (its SLOWLOG, every command but those of the replication
link) and refuses none (``INFO errorstats``, ``rejected_calls``). In write mode, retry, discard
and pause each end in one line saying the server is a read-only replica and to point the
dashboard at the primary, and change nothing.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import pytest
import redis.asyncio as aioredis
from pilot import SIZE, make_app, notices, until, visible_text
from redis.exceptions import ReadOnlyError
from support.audit import CommandAudit
from support.server import FaultServer, ServerFactory
from support.workers import running_worker
from textual.pilot import Pilot

from dashboard.app import DashboardApp
from dashboard.conn_errors import describe_error
from dashboard.model import Mode
from dashboard.screens.job import JobScreen
from dashboard.screens.queue import QueueScreen
from dashboard.widgets.status_bar import REPLICA_BANNER
from engine import Job
from engine.queue import Queue

pytestmark = pytest.mark.timeout(90)

REFUSED = "refused: the server is a read-only replica; point the dashboard at the primary"
COLUMNS = ("wait", "active", "delayed", "failed", "completed")
"""The overview's first count columns, in order."""


@dataclass
class Pair:
    """A primary, its read-only replica, and the queue the workload runs on."""

    primary: FaultServer
    replica: FaultServer
    queue: str


async def _info(url: str, section: str) -> dict[str, Any]:
    client = aioredis.Redis.from_url(url, decode_responses=True)
    try:
        info: dict[str, Any] = await client.info(section)
        return info
    finally:
        await client.aclose()


@pytest.fixture
def pair(server_factory: ServerFactory, queue_name: str) -> Pair:
    """A primary and a replica of it (``REPLICAOF``), in sync; the replica sends keyspace
    notifications (its own setting: the primary's has them off)."""
    primary = server_factory()
    replica = server_factory(notify_keyspace_events="Khlz")
    client = replica.client()
    try:
        client.replicaof(primary.host, primary.port)
        deadline = time.monotonic() + 20
        while client.info("replication").get("master_link_status") != "up":
            assert time.monotonic() < deadline, "the replica did not sync"
            time.sleep(0.05)
        assert client.config_get("replica-read-only") == {"replica-read-only": "yes"}
    finally:
        client.close()
    return Pair(primary, replica, queue_name)


async def process(job: Job) -> Any:
    """Completes a job, or fails it (one attempt) when its data says so."""
    if job.data.get("fail"):
        raise ValueError(f"bad payload {job.data['n']}")
    return job.data["n"]


def screen_counts(app: DashboardApp, queue: str) -> list[str] | None:
    """The queue's wait, active, delayed, failed and done columns as shown on the overview."""
    for line in visible_text(app).splitlines():
        if queue in line:
            return line.split()[1 : 1 + len(COLUMNS)]
    return None


async def primary_counts(queue: Queue) -> list[str]:
    """The same columns read from the primary's state."""
    counts = await queue.get_counts(*COLUMNS)
    return [str(counts[state]) for state in COLUMNS]


async def settled(queue: Queue, total: int, failed: int) -> bool:
    """The primary ran all ``total`` jobs, ``failed`` of them failed."""
    counts = await queue.get_counts("completed", "failed")
    return counts["completed"] + counts["failed"] == total and counts["failed"] == failed


async def follow_the_workload(
    pilot: Pilot[None], app: DashboardApp, pair: Pair, queue: Queue
) -> None:
    """Start the workload on the primary (``queue``) once the app watches the replica; the
    overview follows it live; then more jobs wait (the worker stopped) and it follows again."""
    await until(pilot, lambda: app.snapshot is not None and app.snapshot.error is None)
    async with running_worker(pair.queue, process, pair.primary.url):
        for n in range(12):  # the first add creates the queue: the replica notifies of it
            await queue.add("charge", {"n": n, "fail": n % 4 == 3})
        async with asyncio.timeout(30):
            while not await settled(queue, 12, 3):
                await pilot.pause(0.05)
    await until(pilot, lambda: screen_counts(app, pair.queue) == ["0", "0", "0", "3", "9"])
    assert app.snapshot is not None and app.snapshot.mode is Mode.LIVE
    await queue.add_bulk([("charge", {"n": 100 + n}) for n in range(5)])
    await until(pilot, lambda: screen_counts(app, pair.queue) == ["5", "0", "0", "3", "9"])
    assert screen_counts(app, pair.queue) == await primary_counts(queue)


async def open_failed_job(pilot: Pilot[None], app: DashboardApp, pair: Pair) -> QueueScreen:
    """The queue screen's failed tab lists the primary's failed jobs, and a job's detail
    opens; back on the queue screen."""
    await pilot.press("enter")
    await until(pilot, lambda: isinstance(app.screen, QueueScreen))
    screen = app.screen
    assert isinstance(screen, QueueScreen)
    await pilot.press("5")
    await until(pilot, lambda: screen.page is not None and screen.page.state == "failed")
    assert screen.page is not None and len(screen.page.rows) == 3
    text = visible_text(app)
    assert "bad payload 3" in text and "bad payload 11" in text
    await pilot.press("enter")
    await until(pilot, lambda: isinstance(app.screen, JobScreen))
    job_screen = app.screen
    assert isinstance(job_screen, JobScreen)
    await until(pilot, lambda: job_screen.detail is not None)
    await pilot.pause(0.1)
    text = visible_text(app)
    assert "failed reason" in text and "bad payload" in text
    await pilot.press("escape")
    await until(pilot, lambda: isinstance(app.screen, QueueScreen))
    return screen


async def master_address(replica: FaultServer) -> str:
    """The address the replica shows for its replication link (the commands it replays)."""
    client = aioredis.Redis.from_url(replica.url, decode_responses=True)
    try:
        (link,) = await client.client_list(_type="master")
        return str(link["addr"])
    finally:
        await client.aclose()


async def assert_nothing_written_or_refused(replica: FaultServer, audit: CommandAudit) -> None:
    """Inside the audit's block: the replica refused no command (no READONLY, no error at all)
    and rejected none."""
    errors = await _info(replica.url, "errorstats")
    assert "errorstat_READONLY" not in errors and "errorstat_NOPERM" not in errors, errors
    stats = await _info(replica.url, "commandstats")
    rejected = {k: v["rejected_calls"] for k, v in stats.items() if v["rejected_calls"]}
    assert rejected == {}, rejected
    assert audit.url == replica.url


def dashboard_writes(audit: CommandAudit, link: str) -> list[str]:
    """The write commands of the block but those the replication link replayed."""
    return [str(c) for c in audit.writes() if c.client_address != link]


def no_trouble_on_screen(app: DashboardApp) -> None:
    """No error line, no traceback, no error notification."""
    text = visible_text(app)
    assert "✖" not in text and "Traceback" not in text, text
    errors = [str(n.message) for n in app._notifications if n.severity == "error"]
    assert not errors, errors


async def test_read_only_dashboard_on_a_replica_follows_the_primary(pair: Pair) -> None:
    app = make_app(pair.replica.url, pair.queue, read_only=True)
    link = await master_address(pair.replica)
    async with (
        Queue(pair.queue, pair.primary.url) as queue,
        CommandAudit(pair.replica.url) as audit,
        app.run_test(size=SIZE) as pilot,
    ):
        await follow_the_workload(pilot, app, pair, queue)
        await open_failed_job(pilot, app, pair)
        await pilot.pause(0.2)
        text = visible_text(app)
        assert "READ-ONLY" in text and "LIVE" in text
        no_trouble_on_screen(app)
        await assert_nothing_written_or_refused(pair.replica, audit)
    assert audit.writes(), "the audit saw the replicated writes (else it saw nothing)"
    assert dashboard_writes(audit, link) == []
    assert {"xread", "llen", "zcard"} <= set(audit.calls()), audit.calls()


async def test_write_mode_on_a_replica_follows_and_refuses_each_action_in_one_line(
    pair: Pair,
) -> None:
    """Write mode: it watches as read-only mode does, and says in the status bar that actions
    are off (it read the server's role when it connected); retry, discard and pause are each
    refused before anything is asked, in one warning line that says why and what to do, and
    the queue is as it was."""
    app = make_app(pair.replica.url, pair.queue)
    link = await master_address(pair.replica)
    async with (
        Queue(pair.queue, pair.primary.url) as queue,
        CommandAudit(pair.replica.url) as audit,
        app.run_test(size=SIZE, notifications=True) as pilot,
    ):
        await follow_the_workload(pilot, app, pair, queue)
        screen = await open_failed_job(pilot, app, pair)
        job_id = screen.selected_job()
        assert job_id is not None
        assert REPLICA_BANNER in visible_text(app)
        for count, key in enumerate(("r", "d", "p"), start=1):
            await pilot.press(key)
            await until(
                pilot,
                lambda n=count: sum(REFUSED in str(m.message) for m in app._notifications) == n,  # type: ignore[misc]
            )
            assert isinstance(app.screen, QueueScreen)  # nothing was asked
        said = [n for n in app._notifications if "replica" in str(n.message)]
        assert len(said) == 3
        assert all(n.severity == "warning" and "\n" not in str(n.message) for n in said)
        assert "action failed" not in notices(app)
        await pilot.pause(0.3)
        assert "refused: the server is a read-only" in visible_text(app)  # the toast, on screen
        no_trouble_on_screen(app)
        assert await queue.get_job_state(job_id) == "failed"
        assert not await queue.is_paused()
        assert await primary_counts(queue) == ["5", "0", "0", "3", "9"]
        await assert_nothing_written_or_refused(pair.replica, audit)
    assert dashboard_writes(audit, link) == []
    assert "info" in audit.calls()  # how it knew: INFO replication, a read


async def test_a_readonly_reply_is_named_in_words(pair: Pair) -> None:
    """The words for the server's own ``READONLY`` refusal, where one reaches the status bar or
    an action (a node demoted after the dashboard checked it)."""
    client = aioredis.Redis.from_url(pair.replica.url, decode_responses=True)
    try:
        with pytest.raises(ReadOnlyError) as refused:
            await client.hset(f"corral:{{{pair.queue}}}:meta", "x", "1")
    finally:
        await client.aclose()
    assert describe_error(refused.value) == REFUSED.removeprefix("refused: ")
