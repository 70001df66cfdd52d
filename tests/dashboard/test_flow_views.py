"""Flows in the dashboard at 80x24: a job's parent and children on its screen, walking the tree
from there, and the flow view (``t``) drawn as a tree, against a real server and a real worker."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest
import redis.asyncio as aioredis
from pilot import SIZE, make_app, until, visible_text
from support.workers import running_worker, wait_until
from textual.pilot import Pilot

from dashboard.app import DashboardApp
from dashboard.corral_backend import CorralBackend
from dashboard.screens.flow import FlowScreen
from dashboard.screens.job import JobScreen
from dashboard.widgets.flow_tree import FlowTree
from dashboard.widgets.links_table import LinksTable
from engine import FlowProducer, Job, Queue

pytestmark = pytest.mark.timeout(60)


@dataclass
class Flow:
    """report (queue A) <- fetch (queue B, completed by a worker), render (A) <- chart (A)."""

    queue: str
    other: str
    report: str
    fetch: str
    render: str
    chart: str


async def _done(job: Job) -> str:
    return "fetched"


@pytest.fixture
async def flow(redis_url: str, queue_name: str) -> Flow:
    other = "b" + queue_name[1:]
    async with FlowProducer(redis_url) as producer:
        root = await producer.add(
            {
                "name": "report",
                "queue": queue_name,
                "children": [
                    {"name": "fetch", "queue": other},
                    {"name": "render", "queue": queue_name, "children": [
                        {"name": "chart", "queue": queue_name},
                    ]},
                ],
            }
        )  # fmt: skip
    fetch = next(c for c in root.children if c.ref.queue == other)
    render = next(c for c in root.children if c.ref.queue == queue_name)
    async with Queue(other, redis_url) as q, running_worker(other, _done, redis_url):

        async def fetched() -> bool:
            return await q.get_job_state(fetch.ref.id) == "completed"

        await wait_until(fetched)
    return Flow(
        queue_name,
        other,
        root.ref.id,
        fetch.ref.id,
        render.ref.id,
        render.children[0].ref.id,
    )


async def _open_job(pilot: Pilot[None], app: DashboardApp, queue: str, job_id: str) -> JobScreen:
    await until(pilot, lambda: app.snapshot is not None)
    app.open_job(queue, job_id)
    return await _opened(pilot, app, job_id)


async def _opened(pilot: Pilot[None], app: DashboardApp, job_id: str) -> JobScreen:
    """The job screen of ``job_id`` on top, its links read."""
    await until(
        pilot,
        lambda: (
            isinstance(app.screen, JobScreen)
            and app.screen.job_id == job_id
            and app.screen.links is not None
        ),
    )
    await pilot.pause(0.1)
    screen = app.screen
    assert isinstance(screen, JobScreen)
    return screen


def _stack_height(app: DashboardApp, height: int) -> Callable[[], bool]:
    return lambda: len(app.screen_stack) == height


def _row(text: str, *words: str) -> str:
    """The first screen line holding all ``words``."""
    for line in text.splitlines():
        if all(w in line for w in words):
            return line
    raise AssertionError(f"no line has {words} on the screen:\n{text}")


async def test_job_screen_lists_children_and_walks_down_and_up(flow: Flow, redis_url: str) -> None:
    app = make_app(redis_url, flow.queue)
    async with app.run_test(size=SIZE) as pilot:
        screen = await _open_job(pilot, app, flow.queue, flow.report)
        text = visible_text(app)
        assert "waiting-children" in _row(text, "report")
        assert "completed" in _row(text, "child", flow.other, "fetch")
        assert "waiting-children" in _row(text, "child", "render")
        assert "parent" not in text.split("Help")[0].split()  # a root has no parent row
        # tab to the table, move to "render", enter: its own screen, with parent and child
        await pilot.press("tab")
        table = screen.query_one(LinksTable)
        await until(pilot, lambda: table.has_focus)
        while table.selected_link is not None and table.selected_link.id != flow.render:
            await pilot.press("down")
        await pilot.press("enter")
        render = await _opened(pilot, app, flow.render)
        assert render.links is not None and render.links.parent is not None
        text = visible_text(app)
        assert "waiting-children" in _row(text, "parent", flow.report, "report")
        assert "wait" in _row(text, "child", flow.chart, "chart").split()
        # u opens the parent
        await pilot.press("u")
        await _opened(pilot, app, flow.report)
        for depth in (3, 2, 1):  # report, render, report: walked back one screen at a time
            await until(pilot, _stack_height(app, depth + 2))
            await pilot.press("escape")
        await until(pilot, lambda: not isinstance(app.screen, JobScreen))


async def test_flow_view_draws_the_tree_from_the_root_and_opens_a_node(
    flow: Flow, redis_url: str
) -> None:
    app = make_app(redis_url, flow.queue)
    async with app.run_test(size=SIZE) as pilot:
        await _open_job(pilot, app, flow.queue, flow.chart)
        await pilot.press("t")
        await until(pilot, lambda: isinstance(app.screen, FlowScreen) and app.screen.loaded)
        await pilot.pause(0.1)
        text = visible_text(app)
        lines = text.splitlines()
        order = [
            next(i for i, line in enumerate(lines) if name in line)
            for name in ("report", "render", "chart")
        ]
        assert order == sorted(order)  # root above its child above the grandchild
        assert "waiting-children" in _row(text, flow.report, "report")
        assert "completed" in _row(text, flow.fetch, "fetch", f"@{flow.other}")
        assert "wait" in _row(text, flow.chart, "chart").split()
        assert "◀" in _row(text, "chart")  # the job the view was opened from
        assert "◀" not in _row(text, "report")
        assert "1 level" not in text and "2 levels below the root" in text
        tree = app.screen.query_one(FlowTree)
        assert tree.cursor_node is not None and tree.cursor_node.data is not None
        assert tree.cursor_node.data.id == flow.chart
        await pilot.press("k")  # up from chart: its parent, render
        assert tree.cursor_node.data is not None and tree.cursor_node.data.id == flow.render
        await pilot.press("enter")
        render = await _opened(pilot, app, flow.render)
        assert render.queue == flow.queue
        assert "waiting-children" in _row(visible_text(app), "job", flow.render, "render")


async def test_flow_view_reads_a_collapsed_node_when_it_is_expanded(
    flow: Flow, redis_url: str
) -> None:
    app = make_app(redis_url, flow.queue)
    async with app.run_test(size=SIZE) as pilot:
        await _open_job(pilot, app, flow.queue, flow.report)
        await pilot.press("t")
        await until(pilot, lambda: isinstance(app.screen, FlowScreen) and app.screen.loaded)
        await pilot.pause(0.1)
        assert "chart" not in visible_text(app)  # render is collapsed: its child not read yet
        tree = app.screen.query_one(FlowTree)
        while (
            tree.cursor_node is None
            or tree.cursor_node.data is None
            or (tree.cursor_node.data.id != flow.render)
        ):
            await pilot.press("j")
        await pilot.press("space")
        await until(pilot, lambda: "chart" in visible_text(app))
        assert "wait" in _row(visible_text(app), flow.chart, "chart").split()


async def test_children_beyond_the_limit_are_said_to_exist(
    redis_url: str, queue_name: str, redis: aioredis.Redis
) -> None:
    async with FlowProducer(redis_url) as producer:
        root = await producer.add(
            {
                "name": "batch",
                "queue": queue_name,
                "children": [{"name": f"part-{i}", "queue": queue_name} for i in range(30)],
            }
        )
    backend = CorralBackend()
    links = await backend.read_job_links(redis, queue_name, root.ref.id, 20)
    assert links is not None
    assert len(links.children) == 20 and links.more_children
    assert {c.state for c in links.children} == {"wait"}
    assert await backend.read_job_links(redis, queue_name, "missing", 20) is None
    path = await backend.read_flow_path(redis, queue_name, links.children[0].id)
    assert path == [(queue_name, root.ref.id), (queue_name, links.children[0].id)]
    app = make_app(redis_url, queue_name)
    async with app.run_test(size=SIZE) as pilot:
        await _open_job(pilot, app, queue_name, root.ref.id)
        text = visible_text(app)
        assert "flow: 20+ children" in text
        assert "batch" in text  # the detail is still on screen below the table
