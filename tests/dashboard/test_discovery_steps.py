"""How the monitor finds queues besides its SCAN: named queues skip discovery; a queue a keyspace
notification names is checked on its own (its meta key), with no new SCAN; and a read-only
monitor, which never reads the server's config, learns that notifications are on from the
first one it receives."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest
from support.audit import CommandAudit
from support.server import FaultServer

from dashboard.corral_backend import CorralBackend
from dashboard.model import DashboardSnapshot, Mode
from dashboard.monitor import QueueMonitor
from engine import Queue
from engine.keys import QueueKeys

pytestmark = pytest.mark.timeout(30)

PRODUCER = "discovery-producer"


async def _until(
    stream: AsyncIterator[DashboardSnapshot], check: Callable[[DashboardSnapshot], bool]
) -> DashboardSnapshot:
    async with asyncio.timeout(10):
        async for snapshot in stream:
            if check(snapshot):
                return snapshot
    raise AssertionError("the monitor stopped")


@pytest.mark.parametrize(
    ("key", "queue"),
    [
        ("corral:{emails}:job:42", "emails"),
        ("corral:{emails}:wait", "emails"),
        ("corral:{a.b-c_1}:job:7:logs", "a.b-c_1"),
        ("corral:{emails}", None),
        ("corral:{emails}x:wait", None),
        ("corral:{bad name}:wait", None),
        ("other:{emails}:wait", None),
        ("corral:emails:wait", None),
    ],
)
def test_the_queue_a_sampled_key_names(key: str, queue: str | None) -> None:
    keys = QueueKeys.from_any_key(key)
    assert (keys.queue if keys else None) == queue


async def test_named_queues_are_never_discovered(fresh_server: FaultServer) -> None:
    url = fresh_server.url
    async with Queue("named", url) as queue, Queue("other", url) as other:
        await queue.add("j", {})
        await other.add("j", {})
    async with CommandAudit(url) as audit:
        monitor = QueueMonitor(CorralBackend(), url, queues=["named"], poll_interval=0.1)
        stream = monitor.snapshots()
        try:
            await _until(stream, lambda s: s.queue("named") is not None)
            await asyncio.sleep(0.3)  # a few more counts
            snapshot = await _until(stream, lambda s: True)
        finally:
            await stream.aclose()
    assert [q.name for q in snapshot.queues] == ["named"]
    calls = audit.calls()
    assert calls["scan"] == calls["randomkey"] == calls["exists"] == 0
    assert monitor.discoveries == 0


async def test_read_only_goes_live_and_checks_a_new_queue_alone(fresh_server: FaultServer) -> None:
    url = fresh_server.url
    fresh_server.config_set("notify-keyspace-events", "KEA")
    async with Queue("first", url) as queue:
        await queue.add("j", {})
    named = f"{url}?client_name={PRODUCER}"
    async with CommandAudit(url, ignore_clients=frozenset({PRODUCER})) as audit:
        monitor = QueueMonitor(
            CorralBackend(), url, poll_interval=0.1, discover_interval=600, read_only=True
        )
        stream = monitor.snapshots()
        try:
            first = await _until(stream, lambda s: monitor.discoveries == 1)
            async with Queue("second", named) as second:  # meta written: a notification
                await second.add("j", {})
            found = await _until(stream, lambda s: s.queue("second") is not None)
        finally:
            await stream.aclose()
    assert first.mode is Mode.POLLING and first.notify_flags is None  # not known yet
    assert found.mode is Mode.LIVE
    assert monitor.discoveries == 1  # no second SCAN: the name was checked on its own
    calls = audit.calls()
    assert calls["config|get"] == 0 and calls["psubscribe"] == 1
    assert any(c.name == "exists" and "{second}:meta" in str(c) for c in audit.commands)
    audit.assert_no_writes()
