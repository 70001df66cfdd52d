"""The dashboard app at 80x24 on queues run by Node BullMQ: it lists them with Node's own counts,
pages them and opens their jobs, and with the BullMQ backend it never sends a command that
writes, runs a script, publishes or administers the server (the server's own command counters
before and after, checked against each command's ACL categories, prove it)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from support.bullmq_node import HoldingWorker, NodeDriver
from support.screen import SIZE, until, visible_text
from support.workers import wait_until

from dashboard.app import DashboardApp
from dashboard.bullmq.backend import BullMQBackend, WorkersUnreadable
from dashboard.event_tail import EventTail
from dashboard.model import STATE_ORDER
from dashboard.screens.flow import FlowScreen
from dashboard.screens.job import JobScreen
from dashboard.screens.overview import OverviewScreen
from dashboard.screens.queue import QueueScreen
from dashboard.screens.schedulers import SchedulersScreen
from dashboard.screens.stalled import StalledScreen
from dashboard.screens.workers import WorkersScreen

pytestmark = pytest.mark.timeout(120)


async def make_workload(node: NodeDriver, queue: str, metrics: int | None = None) -> None:
    """Waiting, prioritized, delayed, completed, failed, active and waiting-children jobs (the
    worker records per-minute metrics of ``metrics`` points if asked)."""
    await node.call("worker", queue=queue, concurrency=1, workerName="app-test", metrics=metrics)
    await node.call("add", queue=queue, name="ok", opts={"deduplication": {"id": "dd"}})
    await node.call("add", queue=queue, name="bad", data={"mode": "fail"})

    async def finished() -> bool:
        counts = await node.call("counts", queue=queue)
        return bool(counts["completed"] == 1 and counts["failed"] == 1)

    await wait_until(finished, within=30)
    await node.call("add", queue=queue, name="hold", data={"mode": "hold"})

    async def holding() -> bool:
        return bool((await node.call("counts", queue=queue))["active"] == 1)

    await wait_until(holding, within=30)
    for i in range(3):
        await node.call("add", queue=queue, name="waiting", data={"i": i})
    await node.call("add", queue=queue, name="urgent", opts={"priority": 2})
    await node.call("add", queue=queue, name="later", opts={"delay": 600_000})
    await node.call("flow", queue=queue, childQueue=f"{queue}-kids", children=1)


async def test_the_dashboard_shows_a_node_run_queue(
    node6: NodeDriver, redis_url: str, queue_name: str
) -> None:
    await make_workload(node6, queue_name)
    counts: dict[str, int] = await node6.call("counts", queue=queue_name)
    app = DashboardApp(
        redis_url, BullMQBackend(), queues=[queue_name], read_only=True, poll_interval=0.2
    )
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.snapshot is not None and bool(app.snapshot.queues))
        await pilot.pause(0.2)
        assert isinstance(app.screen, OverviewScreen)
        text = visible_text(app)
        row = next(line for line in text.splitlines() if queue_name in line)
        # queue, ready (wait + prioritized), active, delayed, failed, done, /s, workers
        ready = counts["waiting"] + counts["prioritized"]
        expected = [ready, counts["active"], counts["delayed"], counts["failed"]]
        assert row.split()[1:6] == [str(n) for n in [*expected, counts["completed"]]]
        assert row.split()[7] == str(await node6.call("workers", queue=queue_name))
        assert "READ-ONLY" in text
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, QueueScreen))
        screen = app.screen
        assert isinstance(screen, QueueScreen)
        await pilot.press("4")  # prioritized
        await until(pilot, lambda: screen.page is not None and screen.page.state == "prioritized")
        await pilot.pause(0.1)
        assert "urgent" in visible_text(app)
        await pilot.press("6")  # completed
        await until(pilot, lambda: screen.page is not None and screen.page.state == "completed")
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, JobScreen))
        job_screen = app.screen
        assert isinstance(job_screen, JobScreen)
        await until(pilot, lambda: job_screen.detail is not None)
        await pilot.pause(0.1)
        text = visible_text(app)
        assert "ok" in text and "[completed]" in text
        assert "return value" in text
        await pilot.press("r")  # read-only: nothing is asked, nothing happens
        await pilot.pause(0.2)
        assert isinstance(app.screen, JobScreen)
    assert (await node6.call("counts", queue=queue_name))["completed"] == counts["completed"]


def _calls(stats: dict[str, Any]) -> dict[str, int]:
    return {
        name.removeprefix("cmdstat_"): int(value["calls"])
        for name, value in stats.items()
        if name.startswith("cmdstat_")
    }


FORBIDDEN_CATEGORIES = frozenset({"@write", "@scripting", "@admin", "@pubsub", "@dangerous"})
"""What a read-only dashboard must not send: writes, Lua (EVAL, EVALSHA, FCALL, SCRIPT), PUBLISH,
and server administration (CONFIG SET...), whatever the command's own ``write`` flag says."""
ALLOWED_READS = {
    "client|list": "finding BullMQ's workers, as Node's getWorkers does",
    "config|get": "reading whether keyspace notifications are on",
    "psubscribe": "receiving keyspace notifications (PUBLISH stays forbidden)",
    "punsubscribe": "leaving them",
    "info": "this test's own commandstats reads",
}
"""Reads in the categories above that the dashboard (or this test) may send, and why."""


async def _forbidden(client: aioredis.Redis, commands: list[str]) -> list[str]:
    """The commands of ``commands`` in a forbidden ACL category and not an allowed read."""
    found = []
    for command in commands:
        reply = await client.execute_command("COMMAND", "INFO", command)  # type: ignore[no-untyped-call]
        info = reply.get(command)  # redis-py parses the reply into a dict by name
        assert info is not None, f"the server does not know {command}"
        categories = set(info["acl_categories"])
        if categories & FORBIDDEN_CATEGORIES and command not in ALLOWED_READS:
            found.append(command)
    return found


async def test_read_only_sends_no_write_command(
    bullmq6_modules: Path, fresh_server: Any, queue_name: str
) -> None:
    url = fresh_server.url
    node = await NodeDriver(bullmq6_modules, url).start()
    try:
        await make_workload(node, queue_name, metrics=60)
        await node.call(
            "upsertScheduler", queue=queue_name, id="nightly", repeat={"pattern": "0 3 * * *"}
        )
        flow = await node.call(
            "flow", queue=queue_name, childQueue=f"{queue_name}-kids", children=2
        )
    finally:
        await node.close()  # every Node client gone: from here on only the dashboard talks
    holder = await HoldingWorker(
        bullmq6_modules, url, queue_name, lock_duration=500, stalled_interval=500
    ).start()
    try:
        await holder.wait_taken(1)  # one more active job, soon without its lock
    finally:
        await holder.kill()
    fresh_server.config_set("notify-keyspace-events", "KEA")  # the LIVE path too
    client = aioredis.Redis.from_url(url, decode_responses=True)
    try:
        before = _calls(await client.info("commandstats"))
        backend = BullMQBackend()
        queues = await backend.discover_queues(client)
        assert queue_name in queues
        await backend.read_counts(client, queues)
        await backend.read_layout(client, queue_name)
        await backend.read_metrics(client, queue_name, "completed")
        for state in STATE_ORDER:
            page = await backend.read_page(client, queue_name, state, 0, 20)
            for row in page.rows:
                assert await backend.read_job(client, queue_name, row.id) is not None
        await backend.read_active(client, queue_name, 0, 20)
        await backend.read_workers(client, queues)
        assert (await backend.read_schedulers(client, queue_name, 0, 20)).total == 1
        kids = f"{queue_name}-kids"
        assert await backend.read_job_links(client, queue_name, flow["parent"], 20) is not None
        assert len(await backend.read_flow_path(client, kids, flow["children"][0])) == 2
        history = await backend.read_minute_history(client, queues, 60)
        assert sum(done for done, _ in history.counts[queue_name]) >= 1
        tail = EventTail(backend, block_ms=50)
        await tail.read(client, queues)
        await tail.read(client, queues)

        app_backend = BullMQBackend()
        app = DashboardApp(url, app_backend, read_only=True, poll_interval=0.2)
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: app.snapshot is not None and bool(app.snapshot.queues))
            await pilot.press("p", "R", "s")
            await until(pilot, lambda: isinstance(app.screen, StalledScreen))
            stalled = app.screen
            assert isinstance(stalled, StalledScreen)
            await until(pilot, lambda: stalled.loaded)
            await pilot.press("escape", "enter")
            await until(pilot, lambda: isinstance(app.screen, QueueScreen))
            for key in "12345678":
                await pilot.press(key, "r", "d", "P", "c")
                await pilot.pause(0.2)
            await pilot.press("t")  # the flow of the waiting parent on tab 8
            await until(pilot, lambda: isinstance(app.screen, FlowScreen) and app.screen.loaded)
            await pilot.press("escape", "w")
            await until(pilot, lambda: isinstance(app.screen, WorkersScreen))
            workers = app.screen
            assert isinstance(workers, WorkersScreen)
            await until(pilot, lambda: workers.live is not None)
            await pilot.press("escape", "S")
            await until(pilot, lambda: isinstance(app.screen, SchedulersScreen))
            schedulers = app.screen
            assert isinstance(schedulers, SchedulersScreen)
            await until(pilot, lambda: schedulers.page is not None)
            await pilot.press("escape", "enter")
            await until(pilot, lambda: isinstance(app.screen, JobScreen))
            job = app.screen
            assert isinstance(job, JobScreen)
            await until(pilot, lambda: job.links is not None)
            assert app.snapshot is not None and sum(app.snapshot.hour_completed) >= 1
            await pilot.pause(0.5)
        after = _calls(await client.info("commandstats"))
        # nothing of the bullmq package was constructed (its Queue may write to meta)
        assert backend.actor._queues == {} and app_backend.actor._queues == {}
        used = sorted(name for name, calls in after.items() if calls > before.get(name, 0))
        assert {"llen", "zcard", "lrange", "hmget", "xread", "client|list"} <= set(used)
        assert await _forbidden(client, used) == []
        # the check itself: writes, scripts, publishing and administration all count
        refused = ["hset", "xadd", "eval", "evalsha", "fcall", "script|load", "publish"]
        refused += ["config|set", "flushall"]
        fine = ["hget", "hmget", "zrange", "lrange", "time", "client|list", "config|get"]
        assert await _forbidden(client, refused + fine) == refused
        print("commands the dashboard sent:", " ".join(used))
    finally:
        await client.aclose()


async def test_a_read_only_acl_user_is_enough(
    bullmq6_modules: Path, fresh_server: Any, queue_name: str
) -> None:
    url = fresh_server.url
    node = await NodeDriver(bullmq6_modules, url).start()
    try:
        await make_workload(node, queue_name)
        counts: dict[str, int] = await node.call("counts", queue=queue_name)
    finally:
        await node.close()
    admin = aioredis.Redis.from_url(url, decode_responses=True)
    try:
        # reads only: no write, no CLIENT LIST, no TIME, no CONFIG
        await admin.acl_setuser(
            "reader", enabled=True, passwords=["+pw"], keys=["~*"], channels=["&*"],
            commands=["+@read", "+ping"],
        )  # fmt: skip
    finally:
        await admin.aclose()
    reader_url = url.replace("redis://", "redis://reader:pw@", 1)
    app = DashboardApp(
        reader_url, BullMQBackend(), queues=[queue_name], read_only=True, poll_interval=0.2
    )
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.snapshot is not None and bool(app.snapshot.queues))
        snapshot = app.snapshot
        assert snapshot is not None and snapshot.error is None
        queue = snapshot.queue(queue_name)
        assert queue is not None
        assert queue.counts.failed == counts["failed"] and queue.counts.delayed == 1
        assert queue.workers is None  # CLIENT LIST refused: unknown, not zero
        assert queue.oldest_wait_age_ms is not None
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, QueueScreen))
        screen = app.screen
        assert isinstance(screen, QueueScreen)
        await until(pilot, lambda: screen.page is not None and len(screen.page.rows) == 3)
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, JobScreen))
        job_screen = app.screen
        assert isinstance(job_screen, JobScreen)
        await until(pilot, lambda: job_screen.detail is not None)
        await until(pilot, lambda: job_screen.links is not None)  # its flow links read too
        await pilot.press("escape", "w")  # the workers: CLIENT LIST refused, said so
        await until(pilot, lambda: "CLIENT LIST" in visible_text(app))
        assert "workers unknown: the server refused" in visible_text(app)
    reader = aioredis.Redis.from_url(reader_url, decode_responses=True)
    try:  # TIME is refused too: the schedulers and the history go by this machine's clock
        backend = BullMQBackend()
        with pytest.raises(WorkersUnreadable, match="CLIENT LIST"):
            await backend.read_workers(reader, [queue_name])
        page = await backend.read_schedulers(reader, queue_name, 0, 10)
        assert page.total == 0 and abs(page.now_ms - time.time() * 1000) < 5_000
        history = await backend.read_minute_history(reader, [queue_name], 60)
        assert history.counts[queue_name] == ((0, 0),) * 60  # its worker recorded no metrics
    finally:
        await reader.aclose()
