"""The BullMQ backend's workers, schedulers, flows and per-minute history equal what Node BullMQ
itself says (``getWorkers``, ``getJobSchedulers``/``getRepeatableJobs``, ``getDependencies``
with ``parentKey``, ``getMetrics``), on v6 and on v5 queues that real Node workers ran."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from support.audit import CommandAudit
from support.bullmq_node import NodeDriver, finish_at, sample_flow
from support.workers import wait_until

from dashboard.bullmq.backend import BullMQBackend
from dashboard.model import JobLinks

pytestmark = pytest.mark.timeout(120)

MINUTE_MS = 60_000


def major(node: NodeDriver) -> int:
    """5 or 6: the BullMQ the driver runs (its ``node_modules`` lives in ``bullmq<major>/``)."""
    return int(node.modules.parent.name.removeprefix("bullmq"))


def node_state(state: str | None) -> str | None:
    """Node's name for a state as the backend names it."""
    return "waiting" if state in ("wait", "paused") else state


async def states(node: NodeDriver, queue: str, ids: list[str]) -> list[str]:
    return [await node.call("state", queue=queue, id=job_id) for job_id in ids]


async def wait_states(node: NodeDriver, queue: str, wanted: dict[str, str]) -> None:
    async def reached() -> bool:
        return await states(node, queue, list(wanted)) == list(wanted.values())

    await wait_until(reached, within=30)


# -- workers -----------------------------------------------------------------------------------


async def test_workers_are_the_connections_node_lists(
    node: NodeDriver, redis: aioredis.Redis, queue_name: str
) -> None:
    backend = BullMQBackend()
    other = f"{queue_name}-other"
    named = await node.call("worker", queue=queue_name, workerName="alpha", concurrency=2)
    await node.call("worker", queue=queue_name, concurrency=3)
    await node.call("worker", queue=other, workerName="beta")
    await node.call("add", queue=queue_name, name="ping")  # a worker that did some work too
    theirs: list[dict[str, Any]] = await node.call("getWorkers", queue=queue_name)
    rows = await backend.read_workers(redis, [queue_name, other])
    now_ms = int(time.time() * 1000)
    ours = [row for row in rows if row.queue == queue_name]
    assert [row.queue for row in rows] == [queue_name] * len(ours) + [other]  # in queue order
    assert sorted(row.id for row in ours) == sorted(w["addr"] for w in theirs)
    assert len(ours) == (await backend.read_counts(redis, [queue_name]))[queue_name].workers
    by_addr = {w["addr"]: w for w in theirs}
    for row in ours:
        seen = by_addr[row.id]
        assert row.name == (seen["rawname"].partition(":w:")[2] or None)
        assert row.host == seen["addr"].rpartition(":")[0]
        # age and idle as CLIENT LIST counts them (whole seconds), back from now
        assert abs((now_ms - row.started_ms) / 1000 - int(seen["age"])) <= 2
        assert abs((now_ms - row.last_beat_ms) / 1000 - int(seen["idle"])) <= 2
        # what BullMQ does not record is not made up
        assert (row.pid, row.concurrency, row.in_flight, row.expires_ms, row.restarts) == (
            (None,) * 5
        )
    assert {row.name for row in ours} == {"alpha", None}
    assert [row.name for row in rows if row.queue == other] == ["beta"]
    assert [row.started_ms for row in ours] == sorted(row.started_ms for row in ours)

    await node.call("closeWorker", handle=named)  # a worker that stops drops out

    async def gone() -> bool:
        rows = await backend.read_workers(redis, [queue_name])
        return [row.name for row in rows] == [None]

    await wait_until(gone, within=20)
    assert len(await node.call("getWorkers", queue=queue_name)) == 1


# -- schedulers --------------------------------------------------------------------------------


async def upsert(node: NodeDriver, queue: str, sid: str, repeat: dict[str, Any], **kw: Any) -> str:
    job_id: str = await node.call("upsertScheduler", queue=queue, id=sid, repeat=repeat, **kw)
    return job_id


async def test_schedulers_are_those_node_lists(
    node: NodeDriver, redis: aioredis.Redis, queue_name: str
) -> None:
    backend = BullMQBackend()
    q = queue_name
    first = await upsert(node, q, "every-min", {"every": 60_000}, template={"name": "tick"})
    await upsert(node, q, "paris-9am", {"pattern": "0 9 * * *", "tz": "Europe/Paris"})
    await upsert(node, q, "five-times", {"every": 3_600_000, "limit": 5})
    await upsert(node, q, "fast", {"every": 400}, template={"name": "quick", "data": {"n": 1}})
    legacy: dict[str, str] = {}
    if major(node) == 5:  # repeatable jobs the old way, Queue.add with repeat (gone in v6),
        # keyed by an md5 of their options: known here by the name of their jobs
        legacy["legacy-every"] = await node.call(
            "add", queue=q, name="legacy-every", opts={"repeat": {"every": 120_000}}
        )
        legacy["legacy-cron"] = await node.call(
            "add",
            queue=q,
            name="legacy-cron",
            opts={"repeat": {"pattern": "*/5 * * * *", "tz": "UTC", "limit": 7}},
        )
    # a worker runs "fast" a few times: its iteration count goes up, its old jobs complete
    handle = await node.call("worker", queue=q)

    async def ran() -> bool:
        found = await node.call("schedulers", queue=q)
        return any(s["key"] == "fast" and s.get("iterationCount", 0) >= 3 for s in found)

    await wait_until(ran, within=30)
    await node.call("closeWorker", handle=handle)
    theirs: list[dict[str, Any]] = await node.call("schedulers", queue=q)
    page = await backend.read_schedulers(redis, q, 0, 50)
    assert page.total == len(theirs) == 4 + len(legacy)
    assert [row.id for row in page.rows] == [s["key"] for s in theirs]  # soonest next run first
    assert abs(page.now_ms - time.time() * 1000) < 5_000
    for row, seen in zip(page.rows, theirs, strict=True):
        assert row.malformed is None
        assert row.job_name == seen["name"]
        assert row.next_run_ms == seen["next"]
        assert row.every_ms == (int(seen["every"]) if seen.get("every") else None)
        assert row.pattern == seen.get("pattern")
        assert row.tz == seen.get("tz")
        assert row.end_date_ms == seen.get("endDate")
        assert row.last_job_id is not None
        job_state = await node.call("state", queue=q, id=row.last_job_id)
        assert node_state(row.last_job_state) == job_state
        if "iterationCount" not in seen:  # legacy: counted in its newest job's options only
            newest = await node.call("job", queue=q, id=row.last_job_id)
            assert row.last_job_id == legacy[row.job_name]  # the id Node's add returned
            assert row.iterations == newest["opts"]["repeat"]["count"] == 1
            assert row.limit == newest["opts"]["repeat"].get("limit")
        else:
            assert row.last_job_id == f"repeat:{row.id}:{seen['next']}"
            assert row.iterations == seen["iterationCount"]
            assert row.limit == seen.get("limit")
    rows = {row.id: row for row in page.rows}
    # its first job was due at once and ran; the next one waits a minute
    assert await node.call("state", queue=q, id=first) == "completed"
    every_min = rows["every-min"]
    assert (every_min.job_name, every_min.iterations, every_min.last_job_state) == (
        "tick",
        2,
        "delayed",
    )
    assert every_min.last_job_id == f"repeat:every-min:{int(first.rsplit(':', 1)[1]) + 60_000}"
    assert rows["fast"].iterations >= 3
    assert (rows["paris-9am"].pattern, rows["paris-9am"].tz) == ("0 9 * * *", "Europe/Paris")
    assert rows["five-times"].limit == 5
    second = await backend.read_schedulers(redis, q, 1, 2)  # pages are ZRANGE slices
    assert [row.id for row in second.rows] == [s["key"] for s in theirs[1:3]]


# -- flows -------------------------------------------------------------------------------------


def link_keys(links: JobLinks, prefix: str = "bull") -> set[str]:
    return {f"{prefix}:{child.queue}:{child.id}" for child in links.children}


async def assert_links_as_node(
    backend: BullMQBackend, redis: aioredis.Redis, node: NodeDriver, queue: str, job_id: str
) -> JobLinks:
    """The job's children, their pending flags and states, and its parent, as Node sees them."""
    links = await backend.read_job_links(redis, queue, job_id, 50)
    theirs = await node.call("dependencies", queue=queue, id=job_id)
    job = await node.call("job", queue=queue, id=job_id)
    assert links is not None and theirs is not None
    children = {*theirs["processed"], *theirs["unprocessed"], *theirs["ignored"]}
    children |= set(theirs["failed"])
    assert link_keys(links) == children
    assert {f"bull:{c.queue}:{c.id}" for c in links.children if c.pending} == set(
        theirs["unprocessed"]
    )
    completed = {f"bull:{c.queue}:{c.id}" for c in links.children if c.state == "completed"}
    assert completed == set(theirs["values"])  # getChildrenValues: the completed children
    assert not links.more_children
    assert links.job.has_children == bool(children)
    assert links.job.name == job["name"]
    assert node_state(links.job.state) == job["state"]
    for child in links.children:
        seen = await node.call("job", queue=child.queue, id=child.id)
        assert child.exists and child.name == seen["name"]
        assert node_state(child.state) == seen["state"]
        assert child.failed_reason == seen["failedReason"]
        has_own = await node.call("dependencies", queue=child.queue, id=child.id)
        assert child.has_children == any(
            has_own[k] for k in ("processed", "unprocessed", "ignored", "failed")
        )
    if theirs["parentKey"] is None:
        assert links.parent is None
    else:
        assert links.parent is not None
        assert f"bull:{links.parent.queue}:{links.parent.id}" == theirs["parentKey"]
    return links


async def test_flow_links_equal_node_dependencies(
    node: NodeDriver, redis: aioredis.Redis, queue_name: str
) -> None:
    backend = BullMQBackend()
    q, a, b = queue_name, f"{queue_name}-a", f"{queue_name}-b"
    flow = await sample_flow(node, q, a, b)
    report, stuck, render, chart = flow.report, flow.stuck, flow.render, flow.chart

    root = await assert_links_as_node(backend, redis, node, q, report)
    assert root.job.state == "waiting-children"
    by_name = {child.name: child for child in root.children}
    assert (by_name["fetch"].state, by_name["fetch"].pending) == ("completed", False)
    assert (by_name["optional"].state, by_name["optional"].pending) == ("failed", False)
    assert (by_name["stuck"].state, by_name["stuck"].pending) == ("failed", True)
    assert by_name["stuck"].failed_reason == f"failed on purpose: {stuck}"
    assert (by_name["render"].queue, by_name["render"].has_children) == (b, True)
    # pending children first, then the ones whose failure was ignored, then completed ones
    pending = sorted(["render", "stuck"], key=lambda n: f"{by_name[n].queue}:{by_name[n].id}")
    assert [c.name for c in root.children] == [*pending, "optional", "fetch"]

    middle = await assert_links_as_node(backend, redis, node, b, render)
    assert middle.parent is not None and (middle.parent.queue, middle.parent.id) == (q, report)
    assert middle.parent.state == "waiting-children" and middle.parent.has_children
    leaf = await assert_links_as_node(backend, redis, node, b, chart)
    assert leaf.children == () and not leaf.job.has_children
    await assert_links_as_node(backend, redis, node, a, flow.fetch)
    # failParentOnFailure: the child is in the parent's unsuccessful set, the parent let go
    failed_parent = await assert_links_as_node(backend, redis, node, q, flow.doomed)
    assert [(c.name, c.state, c.pending) for c in failed_parent.children] == [
        ("fatal", "failed", False)
    ]

    assert await backend.read_flow_path(redis, b, chart) == [
        (q, report),
        (b, render),
        (b, chart),
    ]
    assert await backend.read_flow_path(redis, q, report) == [(q, report)]
    assert await backend.read_job_links(redis, q, "no-such-job", 10) is None
    few = await backend.read_job_links(redis, q, report, 2)
    assert few is not None and len(few.children) == 2 and few.more_children


# -- per-minute history ------------------------------------------------------------------------


async def server_minute(redis: aioredis.Redis) -> int:
    seconds, micros = await redis.time()
    now = int(seconds) * 1000 + int(micros) // 1000
    return now - now % MINUTE_MS


async def test_minute_history_places_node_metrics_on_their_minutes(
    node: NodeDriver, redis: aioredis.Redis, queue_name: str
) -> None:
    backend = BullMQBackend()
    now_minute = await server_minute(redis)
    await node.call("worker", queue=queue_name, metrics=60)
    # jobs finished 5, 3 and 1 minutes ago, by a worker whose clock says so
    plan = {5: (2, 1), 3: (1, 0), 1: (3, 1)}
    for ago, (completed, failed) in plan.items():
        await finish_at(node, queue_name, now_minute - ago * MINUTE_MS + 1_000, completed, failed)
    await node.call("clock", at=None)

    history = await backend.read_minute_history(redis, [queue_name, "no-such-queue"], 60)
    rows = history.counts[queue_name]
    assert len(rows) == 60 and history.counts["no-such-queue"] == ((0, 0),) * 60
    assert history.end_minute_ms in (now_minute, now_minute + MINUTE_MS)
    by_minute = {
        history.end_minute_ms - (59 - index) * MINUTE_MS: counts
        for index, counts in enumerate(rows)
    }
    expected = {now_minute - ago * MINUTE_MS: counts for ago, counts in plan.items()}
    assert {minute: c for minute, c in by_minute.items() if c != (0, 0)} == expected
    # Node's own metrics: the lifetime counts are our minutes' sums, its lists are ours
    for index, kind in enumerate(("completed", "failed")):
        theirs = await node.call("metrics", queue=queue_name, kind=kind)
        assert sum(counts[index] for counts in rows) == theirs["count"]
        assert await backend.read_metrics(redis, queue_name, kind) == (
            theirs["count"],
            theirs["data"],
        )
    completed_data = (await node.call("metrics", queue=queue_name, kind="completed"))["data"]
    assert completed_data == [0, 1, 0, 2]  # booked late: newest minute first, the last open
    # a recent window only: the minute one ago and the current one
    recent = await backend.read_minute_history(redis, [queue_name], 2)
    assert recent.counts[queue_name][-2:] == tuple(
        by_minute.get(recent.end_minute_ms - i * MINUTE_MS, (0, 0)) for i in (1, 0)
    )


# -- every view's reads: bounded, and not one write ---------------------------------------------


async def test_the_views_read_bounded_and_write_nothing(
    bullmq6_modules: Path, fresh_server: Any, queue_name: str
) -> None:
    url = fresh_server.url
    q, a, b, m = (f"{queue_name}{suffix}" for suffix in ("", "-a", "-b", "-m"))
    node = await NodeDriver(bullmq6_modules, url).start()
    try:
        flow = await sample_flow(node, q, a, b)
        await upsert(node, q, "every-min", {"every": 60_000})
        await node.call("worker", queue=m, metrics=60)
        await finish_at(node, m, int(time.time() * 1000), completed=2, failed=1)
    finally:
        await node.close()  # from here on only the dashboard's reads reach the server
    backend = BullMQBackend()
    jobs = [(q, flow.report), (a, flow.fetch), (b, flow.render), (b, flow.chart), (q, flow.doomed)]
    client = aioredis.Redis.from_url(url, decode_responses=True)
    try:
        async with CommandAudit(url) as audit:
            await backend.read_workers(client, [q, a, b, m])
            assert (await backend.read_schedulers(client, q, 0, 50)).total == 1
            assert (await backend.read_schedulers(client, q, 0, 0)).rows == ()
            for queue, job_id in jobs:
                assert await backend.read_job_links(client, queue, job_id, 20) is not None
                links = await backend.read_job_links(client, queue, job_id, 0)
                assert links is not None and links.children == ()
                assert (await backend.read_flow_path(client, queue, job_id))[-1] == (queue, job_id)
            history = await backend.read_minute_history(client, [q, a, b, m], 60)
            assert [sum(n) for n in zip(*history.counts[m], strict=True)] == [2, 1]
    finally:
        await client.aclose()
    audit.assert_no_writes()
    audit.assert_bounded_reads()
    used = set(audit.calls())
    assert {"client|list", "zrange", "hmget", "srandmember", "hrandfield", "lpos"} <= used
