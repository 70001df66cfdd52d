"""N6 on the screen: the dashboard (Pilot, 80x24, ``corral dash``'s poll interval and socket
timeouts) reaches the server through the fault proxy, which blackholes the link for 30 s while
a real workload (``Queue`` adds, an in-process ``Worker``) goes on against the server directly.

Within 5 s the status bar says DISCONNECTED with "data as of HH:MM:SS" (the time of the last
data read before the cut) and the last counts stay on screen, all through the partition, with the
error in words and never a traceback. After the heal it reconnects by itself and the counts on
screen are the queue's state again, although the keyspace notifications and the events of the
gap never reached it (it recounts from state on reconnecting).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from pilot import SIZE, notices, until, visible_text
from support.proxy import FaultProxy
from support.server import FaultServer
from support.workers import running_worker

from dashboard.app import DashboardApp
from dashboard.corral_backend import CorralBackend
from dashboard.model import Mode
from dashboard.widgets.format import clock
from engine import Job
from engine.queue import Queue

PARTITION_S = 30.0
DETECT_S = 5.0
HEAL_S = 10.0
"""After the heal: the monitor's backoff (capped at 4 s) plus a connect and a first count."""
COLUMNS = ("wait", "active", "delayed", "failed", "completed")


@pytest.fixture
def proxy(fresh_server: FaultServer) -> Iterator[FaultProxy]:
    with FaultProxy(fresh_server.port) as running:
        yield running


async def process(job: Job) -> Any:
    """Completes a job, or fails it (one attempt) when its data says so."""
    if job.data.get("fail"):
        raise ValueError("refused by the test")
    return "ok"


def screen_counts(app: DashboardApp, queue: str) -> list[str] | None:
    """The queue's wait, active, delayed, failed and done columns as shown on the overview."""
    for line in visible_text(app).splitlines():
        if queue in line:
            return line.split()[1 : 1 + len(COLUMNS)]
    return None


async def state_counts(queue: Queue) -> list[str]:
    """The same columns, read from the queue's state on the server."""
    counts = await queue.get_counts(*COLUMNS)
    return [str(counts[state]) for state in COLUMNS]


def no_trouble(app: DashboardApp) -> None:
    """No traceback on screen, no error notification, no failed worker of the app."""
    assert "Traceback" not in visible_text(app)
    errors = [str(n.message) for n in app._notifications if n.severity == "error"]
    assert not errors, errors
    assert all(w.error is None for w in app.workers), [w.error for w in app.workers]


@pytest.mark.timeout(90)
async def test_blackhole_shows_disconnected_with_the_data_time_and_recounts_after(
    fresh_server: FaultServer, proxy: FaultProxy, queue_name: str
) -> None:
    fresh_server.config_set("notify-keyspace-events", "Khlz")
    app = DashboardApp(proxy.url, CorralBackend(), queues=[queue_name])  # corral dash's timings
    assert app.monitor.poll_interval == 1.0
    async with Queue(queue_name, fresh_server.url) as queue, app.run_test(size=SIZE) as pilot:
        await queue.add_bulk([("send", {}) for _ in range(3)])
        await until(pilot, lambda: screen_counts(app, queue_name) == ["3", "0", "0", "0", "0"])
        assert app.snapshot is not None and app.snapshot.mode is Mode.LIVE
        proxy.blackhole()
        cut_at, cut_wall = time.monotonic(), time.time()
        await until(pilot, lambda: "DISCONNECTED" in visible_text(app), within=DETECT_S + 5)
        detected_in = time.monotonic() - cut_at
        assert detected_in < DETECT_S, detected_in
        assert app.snapshot is not None and app.snapshot.as_of is not None
        as_of = app.snapshot.as_of
        assert as_of <= cut_wall
        shown = f"data as of {clock(as_of)}"
        assert shown in visible_text(app)

        # the workload goes on behind the partition: jobs run, fail, and more wait
        async with running_worker(queue_name, process, fresh_server.url):
            await queue.add_bulk([("send", {"fail": n < 2}) for n in range(5)])

            async def ran() -> bool:
                counts = await queue.get_counts("completed", "failed")
                return counts["completed"] == 6 and counts["failed"] == 2

            while not await ran():
                await pilot.pause(0.1)
        await queue.add_bulk([("send", {}) for _ in range(4)])
        final = await state_counts(queue)
        assert final == ["4", "0", "0", "2", "6"]

        while time.monotonic() < cut_at + PARTITION_S:  # all along: the same banner and data
            text = visible_text(app)
            assert "DISCONNECTED" in text and shown in text, text
            assert "✖ " in text  # the error in words, on its own line
            assert screen_counts(app, queue_name) == ["3", "0", "0", "0", "0"]
            no_trouble(app)
            await pilot.pause(1.0)
        assert app.snapshot is not None and app.snapshot.error is not None
        said = app.snapshot.error

        proxy.heal()
        healed_at = time.monotonic()
        await until(pilot, lambda: screen_counts(app, queue_name) == final, within=HEAL_S + 20)
        back_in = time.monotonic() - healed_at
        assert back_in < HEAL_S, back_in
        await pilot.pause(0.2)
        text = visible_text(app)
        assert "DISCONNECTED" not in text and "data as of" not in text and "✖" not in text
        assert app.snapshot.mode is Mode.LIVE
        assert screen_counts(app, queue_name) == await state_counts(queue)
        no_trouble(app)
    assert "Traceback" not in said + notices(app)
