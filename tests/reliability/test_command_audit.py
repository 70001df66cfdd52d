"""Command audit: the dashboard's monitor and backend reads, and ``Queue``'s read methods,
issue no writes, no KEYS and no unbounded range reads (RELIABILITY.md 3.1, 3.2, D4)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable

import pytest
from support.audit import CommandAudit, LoggedCommand, raw_command, unbounded_reason
from support.populate import every_state
from support.server import ServerFactory

from dashboard.corral_backend import CorralBackend
from dashboard.model import DashboardSnapshot, Mode
from dashboard.monitor import QueueMonitor
from engine import FlowProducer, Queue
from engine.health import Thresholds

pytestmark = pytest.mark.timeout(60)

PRODUCER = "audit-producer"
STATES = ("wait", "paused", "prioritized", "delayed", "active", "completed", "failed")


def _cmd(*args: str) -> LoggedCommand:
    return LoggedCommand(args, "127.0.0.1:1", "")


@pytest.mark.parametrize(
    ("args", "bounded"),
    [
        (("LRANGE", "k", "0", "49"), True),
        (("LRANGE", "k", "-200", "-1"), True),
        (("LRANGE", "k", "0", "-1"), False),
        (("ZRANGE", "k", "0", "5000"), False),
        (("ZRANGE", "k", "-inf", "+inf", "BYSCORE"), False),
        (("ZRANGE", "k", "-inf", "+inf", "BYSCORE", "LIMIT", "0", "10"), True),
        (("ZRANGEBYSCORE", "k", "-inf", "+inf"), False),
        (("XRANGE", "k", "-", "+"), False),
        (("XRANGE", "k", "-", "+", "COUNT", "10"), True),
        (("XREAD", "COUNT", "500", "BLOCK", "1000", "STREAMS", "k", "0-0"), True),
        (("XREAD", "STREAMS", "k", "0-0"), False),
        (("LPOS", "k", "x"), False),
        (("LPOS", "k", "x", "MAXLEN", "100000"), True),
        (("KEYS", "*"), False),
        (("SMEMBERS", "k"), False),
        (("SCAN", "0", "MATCH", "x*", "COUNT", "1000"), True),
        (("HGETALL", "k"), True),
    ],
)
def test_unbounded_reads_are_recognised(args: tuple[str, ...], bounded: bool) -> None:
    assert (unbounded_reason(_cmd(*args)) is None) is bounded


async def test_the_audit_sees_writes_and_keys(server_factory: ServerFactory) -> None:
    server = server_factory()
    async with CommandAudit(server.url) as audit, Queue("q", server.url) as queue:
        await queue.add("j", {})
        await queue.client.keys("*")
        await queue.client.lrange("x", 0, -1)
    assert {c.name for c in audit.writes()} >= {"evalsha"}
    assert {r for _, r in audit.unbounded()} >= {
        "KEYS reads a whole collection",
        "LRANGE 0 -1 spans more than 1000 entries",
    }
    assert audit.commandstats.get("keys", 0) >= 1
    with pytest.raises(AssertionError, match="write commands issued"):
        audit.assert_no_writes()


def _logs_are_capped(command: LoggedCommand) -> bool:
    """Job logs are trimmed to 1,000 lines on every append, so reading all of them is bounded."""
    return command.name == "lrange" and command.args[1].endswith(":logs")


_CHILD_SET = re.compile(r":job:[^:]+:(dependencies|failed)$")


def _capped_by_the_engine(command: LoggedCommand) -> bool:
    """Logs (above); a parent's sets of children: a job gets its children only when its flow
    is added, at most ``MAX_FLOW_JOBS`` per call; and a queue's ``workers`` zset, which every
    heartbeat trims to the workers seen in the last minute. Reading those whole is bounded."""
    if _logs_are_capped(command):
        return True
    key = command.args[1] if len(command.args) > 1 else ""
    if command.name == "zrange" and key.endswith("}:workers"):
        return True
    return command.name in ("smembers", "zrange") and bool(_CHILD_SET.search(key))


async def test_queue_read_methods_write_nothing_and_read_bounded(
    server_factory: ServerFactory,
) -> None:
    server = server_factory()
    async with Queue("reads", server.url, max_events=100) as queue:
        await every_state(queue)
        done = (await queue.get_job_ids("completed"))[0]
        delayed = (await queue.get_job_ids("delayed"))[0]
    async with CommandAudit(server.url) as audit, Queue("reads", server.url) as reader:
        for state in STATES:
            await reader.get_counts(state)
            await reader.get_job_ids(state)
            await reader.get_jobs(state)
            await reader.get_job_entries(state, 0, 9)
        await reader.get_counts()
        await reader.get_totals()
        await reader.is_paused()
        for job_id in (done, delayed, "missing"):
            await reader.get_job(job_id)
            await reader.get_job_state(job_id)
            await reader.get_job_logs(job_id)
    audit.assert_no_writes()
    audit.assert_bounded_reads(exempt=_logs_are_capped)
    assert audit.calls()["lrange"] >= 2


async def test_state_of_a_waiting_job_is_the_one_documented_list_scan(
    server_factory: ServerFactory,
) -> None:
    """protocol.md section 10 lists LPOS on wait/paused as not bounded; nothing else is."""
    server = server_factory()
    async with Queue("scan", server.url) as queue:
        job = await queue.add("j", {})
    async with CommandAudit(server.url) as audit, Queue("scan", server.url) as reader:
        await reader.get_job(job.id)
    audit.assert_no_writes()
    assert [r for _, r in audit.unbounded()] == ["LPOS without MAXLEN scans the whole list"] * 2


async def _run_monitor(
    monitor: QueueMonitor, until: Callable[[DashboardSnapshot], bool], feed: AsyncIterator[None]
) -> DashboardSnapshot:
    """Iterate the monitor's snapshots (feeding the queue between them) until ``until``."""
    stream = monitor.snapshots()
    try:
        async with asyncio.timeout(20):
            async for snapshot in stream:
                if until(snapshot):
                    return snapshot
                await anext(feed, None)
    finally:
        await stream.aclose()
    raise AssertionError("the monitor stopped")


async def _producer(url: str, queue: str) -> AsyncIterator[None]:
    """Adds a job per step, on a client named so the audit leaves it out."""
    async with Queue(queue, f"{url}?client_name={PRODUCER}") as q:
        for i in range(1000):
            await q.add("more", {"i": i})
            yield


async def _read_every_view(backend: CorralBackend, url: str, queue: str) -> None:
    """What the screens ask of the backend: pages of every state, active jobs, job details,
    and the flow links and paths of those jobs and of a flow's parent."""
    async with Queue(queue, f"{url}?client_name={PRODUCER}") as q:
        ids = [i for s in (*STATES, "waiting-children") for i in await q.get_job_ids(s, 0, 1)]
        parents = await q.get_job_ids("waiting-children", 0, 0)
        children = (await q.get_dependencies(parents[0])).children() if parents else []
    async with Queue(queue, url) as reader:
        for state in STATES:
            await backend.read_page(reader.client, queue, state, 0, 50)
            await backend.read_page(reader.client, queue, state, 50, 50)
        await backend.read_active(reader.client, queue, 0, 50)
        await backend.read_workers(reader.client, [queue])
        await backend.read_schedulers(reader.client, queue, 0, 50)
        history = await backend.read_minute_history(reader.client, [queue], 60)
        assert len(history.counts[queue]) == 60
        for job_id in ids:
            assert await backend.read_job(reader.client, queue, job_id) is not None
            assert await backend.read_job_links(reader.client, queue, job_id, 20) is not None
            assert (await backend.read_flow_path(reader.client, queue, job_id))[-1][1] == job_id
        for child in children:
            path = await backend.read_flow_path(reader.client, child.queue, child.id)
            assert path[0] == (queue, parents[0])
            links = await backend.read_job_links(reader.client, child.queue, child.id, 20)
            assert links is not None and links.parent is not None


async def _a_flow(url: str, queue: str) -> None:
    """A parent waiting for three children (one of them in another queue), behind which the
    test adds thousands of waiting jobs: finding the children's state means a (bounded) scan."""
    leaf = {"name": "leaf", "queue": queue}
    async with FlowProducer(url) as producer:
        await producer.add(
            {
                "name": "parent",
                "queue": queue,
                "children": [
                    {"name": "child", "queue": queue},
                    {"name": "child", "queue": queue, "children": [leaf]},
                    {"name": "elsewhere", "queue": f"{queue}-other"},
                ],
            }
        )  # fmt: skip


@pytest.mark.parametrize("notifications", ["", "KEA"])
async def test_dashboard_monitor_and_views_write_nothing_and_read_bounded(
    server_factory: ServerFactory, notifications: str
) -> None:
    """The dashboard's data source, polling or live, plus every view's reads, on a queue with
    5,000 waiting jobs: only bounded reads, not one write."""
    server = server_factory(notify_keyspace_events=notifications)
    named = f"{server.url}?client_name={PRODUCER}"
    async with Queue("watched", named, max_events=100) as queue:
        await every_state(queue)
        await _a_flow(named, "watched")
        await queue.upsert_job_scheduler("tick", every=60_000)
        await queue.add_bulk([("bulk", {"i": i}) for i in range(5_000)])
    backend = CorralBackend()
    async with CommandAudit(server.url, ignore_clients=frozenset({PRODUCER})) as audit:
        every_threshold = Thresholds(
            max_failed=0, max_waiting=1, max_wait_age_ms=0, max_stalled=0, min_workers=1
        )
        monitor = QueueMonitor(
            backend, server.url, poll_interval=0.2, block_ms=200, thresholds=every_threshold,
            health_interval=0.2,
        )  # fmt: skip
        feed = _producer(server.url, "watched")

        def seen_events(snapshot: DashboardSnapshot) -> bool:
            watched = snapshot.queue("watched")
            return (
                watched is not None and len(snapshot.recent_events) >= 6 and bool(snapshot.breaches)
            )

        snapshot = await _run_monitor(monitor, seen_events, feed)
        await feed.aclose()  # type: ignore[attr-defined]
        await _read_every_view(backend, server.url, "watched")
    assert snapshot.mode is (Mode.LIVE if notifications else Mode.POLLING)
    assert {b.what for b in snapshot.breaches if b.queue == "watched"} >= {"waiting", "workers"}
    audit.assert_no_writes()
    audit.assert_bounded_reads(exempt=_capped_by_the_engine)
    assert audit.calls()["scan"] >= 1 and audit.calls()["xread"] >= 1
    assert audit.commandstats.get("keys", 0) == 0


RO_USER = "corral-ro"
RO_RULES = [  # the monitor's PSUBSCRIBE pattern, literally: the server allows no other
    "reset", "on", ">ro-secret", "~corral:*", "&corral:*", "&__keyspace@0__:corral:{*}:meta",
    "+@read", "+@connection", "+subscribe", "+psubscribe", "+unsubscribe", "+punsubscribe",
    "-@dangerous", "+info", "+time",
]  # fmt: skip


async def test_dashboard_monitor_runs_as_a_read_only_acl_user(
    server_factory: ServerFactory,
) -> None:
    """Z1's ACL user (RELIABILITY.md 3.1): the read-only monitor works and the server refuses
    it nothing (an empty ACL LOG): it never asks CONFIG GET for the notification flags, it
    listens and sees; with notifications off, it polls. The whole app: test_read_only_acl.py."""
    server = server_factory()
    async with Queue("acl", server.url) as queue:
        await every_state(queue)
        await raw_command(queue.client, "ACL", "SETUSER", RO_USER, *RO_RULES)
    url = server.url.replace("redis://", f"redis://{RO_USER}:ro-secret@")
    async with CommandAudit(server.url) as audit:
        monitor = QueueMonitor(
            CorralBackend(), url, poll_interval=0.2, block_ms=200, read_only=True
        )

        def counted(snapshot: DashboardSnapshot) -> bool:
            acl = snapshot.queue("acl")  # counted, and a whole discovery (SCAN) done
            failed = acl.counts.as_dict()["failed"] if acl is not None else 0
            return failed == 2 and monitor.discoveries > 0

        async def nothing() -> AsyncIterator[None]:
            while True:
                yield

        snapshot = await _run_monitor(monitor, counted, nothing())
        await _read_every_view(CorralBackend(), url, "acl")
    assert snapshot.error is None and snapshot.mode is Mode.POLLING
    assert snapshot.notify_flags is None  # not asked
    assert audit.acl_log == [], audit.acl_log
    assert audit.calls()["psubscribe"] == 1
    audit.assert_no_writes()
