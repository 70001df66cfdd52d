"""The workers (``w``), schedulers (``S``), flow (the job screen's links, ``u``, ``t``) views and
the overview's last-hour chart at 80x24, on BullMQ 6 queues that real Node workers, job
schedulers, FlowProducer flows and metrics-recording workers made."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis
from support.bullmq_node import MINUTE_MS, NodeDriver, finish_at, sample_flow
from support.screen import SIZE, until, visible_text
from textual.pilot import Pilot

from dashboard.app import DashboardApp
from dashboard.bullmq.backend import BullMQBackend
from dashboard.monitor import HISTORY_MINUTES
from dashboard.screens.flow import FlowScreen
from dashboard.screens.job import JobScreen
from dashboard.screens.schedulers import SchedulersScreen
from dashboard.screens.workers import WorkersScreen
from dashboard.widgets.links_table import LinksTable

pytestmark = pytest.mark.timeout(120)


def row(text: str, *words: str) -> str:
    """The first screen line holding all ``words``."""
    for line in text.splitlines():
        if all(word in line for word in words):
            return line
    raise AssertionError(f"no line has {words} on the screen:\n{text}")


def app_on(url: str, *queues: str) -> DashboardApp:
    return DashboardApp(url, BullMQBackend(), queues=queues, read_only=True, poll_interval=0.2)


async def showing(pilot: Pilot[None], app: DashboardApp, *words: str) -> str:
    """The screen's text once all ``words`` are on it."""
    await until(pilot, lambda: all(word in visible_text(app) for word in words))
    return visible_text(app)


def opened(app: DashboardApp, job_id: str) -> bool:
    """The job screen of ``job_id`` is on top, with its flow links read."""
    screen = app.screen
    return isinstance(screen, JobScreen) and screen.job_id == job_id and screen.links is not None


async def started(pilot: Pilot[None], app: DashboardApp) -> None:
    await until(pilot, lambda: app.snapshot is not None and bool(app.snapshot.queues))


async def test_workers_view_shows_the_node_workers(
    node6: NodeDriver, redis_url: str, queue_name: str
) -> None:
    await node6.call("worker", queue=queue_name, workerName="alpha")
    await node6.call("worker", queue=queue_name)
    addrs = sorted(w["addr"] for w in await node6.call("getWorkers", queue=queue_name))
    app = app_on(redis_url, queue_name)
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot, app)
        await pilot.press("w")

        def two_rows() -> bool:
            screen = app.screen
            return isinstance(screen, WorkersScreen) and len(screen.live or ()) == 2

        await until(pilot, two_rows)

        def rows_shown() -> list[list[str]]:
            lines = visible_text(app).splitlines()
            return [line.split() for line in lines if line.split()[:1] == [queue_name]]

        # the table is re-read every second: wait for a frame with both rows laid out
        await until(pilot, lambda: len(rows_shown()) == 2 and len(rows_shown()[1]) == 8)
        text = visible_text(app)
        assert "2 live workers on 1 host, jobs in flight: n/a" in text
        for cells in rows_shown():
            # queue, host, pid, conc, busy, up, rst, beat: BullMQ records no pid and the like
            assert cells[1] == "127.0.0.1" and cells[2:5] == ["n/a"] * 3 and cells[6] == "n/a"
        details = []
        for _ in range(2):  # the line under the table describes the worker under the cursor
            details.append(row(await showing(pilot, app, " id 127.0.0.1:"), "worker ", " id "))
            await pilot.press("j")
            await pilot.pause(0.1)
        named = [d for d in details if "worker alpha" in d]
        assert len(named) == 1
        assert sorted(d.split(" id ")[1].split()[0] for d in details) == addrs
        assert "not recorded: pid," in text  # and the rest, on the next line at 80 columns


async def test_schedulers_view_shows_job_schedulers_and_opens_the_next_job(
    node6: NodeDriver, redis_url: str, queue_name: str
) -> None:
    first = await node6.call(
        "upsertScheduler",
        queue=queue_name,
        id="every-min",
        repeat={"every": 60_000},
        template={"name": "tick"},
    )
    await node6.call(
        "upsertScheduler",
        queue=queue_name,
        id="paris-9am",
        repeat={"pattern": "0 9 * * *", "tz": "Europe/Paris"},
    )
    app = app_on(redis_url, queue_name)
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot, app)
        await pilot.press("S")

        def loaded() -> bool:
            screen = app.screen
            return isinstance(screen, SchedulersScreen) and screen.page is not None

        await until(pilot, loaded)
        # the page is re-read every second: wait for a frame with both rows laid out
        text = await showing(pilot, app, "every 1m", "Europe/Paris", "job tick")
        assert "1-2 of 2" in text
        every = row(text, "every-min", "every 1m").split()
        assert every[3] == "UTC" and every[-2:] == ["1", "wait"]  # due now, no worker yet
        cron = row(text, "paris-9am", "0 9 * * *", "Europe/Paris").split()
        assert cron[-4] == "in" and cron[-2:] == ["1", "delayed"]
        detail = row(text, "job tick")  # the soonest one is under the cursor
        assert "runs 1" in detail and "last job" in detail
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, JobScreen))
        job = app.screen
        assert isinstance(job, JobScreen) and job.job_id == first
        await until(pilot, lambda: job.detail is not None)
        await pilot.pause(0.1)
        assert "tick" in visible_text(app)


async def test_flow_links_walk_and_tree(node6: NodeDriver, redis_url: str, queue_name: str) -> None:
    q, a, b = queue_name, "a" + queue_name[1:], "b" + queue_name[1:]
    flow = await sample_flow(node6, q, a, b)
    app = app_on(redis_url, q, a, b)
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot, app)
        app.open_job(q, flow.report)
        await until(pilot, lambda: opened(app, flow.report))
        await pilot.pause(0.1)
        text = visible_text(app)
        assert "flow: 4 children" in text
        assert "completed" in row(text, "child", a, "fetch")
        assert "failed" in row(text, "child", a, "optional")
        assert "waiting-children" in row(text, "child", b, "render")
        # the failed child it still waits for (its reason is past 80 columns with uuid ids)
        assert f"of {a}: failed" in row(text, "blocked by child")
        screen = app.screen
        assert isinstance(screen, JobScreen) and screen.links is not None
        stuck = next(child for child in screen.links.children if child.id == flow.stuck)
        assert stuck.pending and stuck.failed_reason == f"failed on purpose: {flow.stuck}"
        # tab into the links, down to render, enter: its screen, with parent and child
        await pilot.press("tab")
        table = screen.query_one(LinksTable)
        await until(pilot, lambda: table.has_focus)
        while table.selected_link is not None and table.selected_link.id != flow.render:
            await pilot.press("down")
        await pilot.press("enter")
        await until(pilot, lambda: opened(app, flow.render))
        await pilot.pause(0.1)
        text = visible_text(app)
        assert "waiting-children" in row(text, "parent", q, "report")
        assert "wait" in row(text, "child", b, "chart").split()
        await pilot.press("u")  # up to the parent again
        await until(pilot, lambda: opened(app, flow.report))
        await pilot.press("t")
        await until(pilot, lambda: isinstance(app.screen, FlowScreen) and app.screen.loaded)
        await pilot.pause(0.1)
        text = visible_text(app)
        assert "waiting-children" in row(text, flow.report[:20], "report")
        assert "completed" in row(text, flow.fetch[:20], "fetch", f"@{a}")
        assert "failed" in row(text, flow.stuck[:20], "stuck", f"@{a}")
        assert "waiting-children" in row(text, flow.render[:20], "render", f"@{b}")
        assert "the root" in text and "◀" in row(text, "report")  # opened from the root
        assert "chart" not in text  # render is not expanded: its child is not read yet


async def test_overview_chart_shows_the_hour_of_node_metrics_at_start(
    node6: NodeDriver, redis_url: str, redis: aioredis.Redis, queue_name: str
) -> None:
    seconds, micros = await redis.time()
    now = int(seconds) * 1000 + int(micros) // 1000
    minute = now - now % MINUTE_MS
    await node6.call("worker", queue=queue_name, metrics=60)
    await finish_at(node6, queue_name, minute - 3 * MINUTE_MS + 1_000, completed=2, failed=1)
    await finish_at(node6, queue_name, minute - 1 * MINUTE_MS + 1_000, completed=3, failed=0)
    await node6.call("clock", at=None)
    app = app_on(redis_url, queue_name)
    async with app.run_test(size=SIZE) as pilot:

        def has_hour() -> bool:
            return app.snapshot is not None and sum(app.snapshot.hour_completed) == 5

        await until(pilot, has_hour)
        await pilot.pause(0.3)
        snapshot = app.snapshot
        assert snapshot is not None and sum(snapshot.hour_failed) == 1
        assert len(snapshot.hour_completed) == HISTORY_MINUTES
        end = app.monitor._history_end
        assert end is not None
        at = {ago: HISTORY_MINUTES - 1 - (end - (minute - ago * MINUTE_MS)) // MINUTE_MS
              for ago in (3, 1)}  # fmt: skip
        assert snapshot.hour_completed[at[3]] == 2 and snapshot.hour_failed[at[3]] == 1
        assert snapshot.hour_completed[at[1]] == 3
        assert sum(snapshot.completed_history) == 0  # nothing finished while it watched
        text = visible_text(app)
        assert "last hour, jobs/min" in text and "-59m" in text and "now" in text
