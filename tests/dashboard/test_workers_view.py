"""The workers view at 80x24: live ``corral worker`` processes with host, pid, concurrency and
heartbeat, a killed one dropping out, and a queue with work and no worker flagged."""

from __future__ import annotations

import socket

import pytest
from pilot import SIZE, until, visible_text
from support.workers import WorkerProcess, wait_until

from dashboard.app import DashboardApp
from dashboard.corral_backend import CorralBackend
from dashboard.screens.queue import QueueScreen
from dashboard.screens.workers import WorkersScreen
from dashboard.widgets.workers_table import WorkersTable
from engine import Queue

pytestmark = pytest.mark.timeout(90)


def _workers_screen(app: DashboardApp) -> WorkersScreen:
    screen = app.screen
    assert isinstance(screen, WorkersScreen)
    return screen


def _lines_with(text: str, word: str) -> list[str]:
    return [line for line in text.splitlines() if word in line]


async def test_workers_of_a_queue_and_of_all_queues(
    redis_url: str, queue_name: str, procs: list[WorkerProcess]
) -> None:
    idle = "b" + queue_name[1:]  # sorts first in the overview
    async with Queue(idle, redis_url) as q:
        for i in range(3):
            await q.add("waits", {"i": i})
    for concurrency in (2, 5):
        procs.append(
            WorkerProcess(
                "support.jobs:noop", queue_name, redis_url, concurrency=concurrency,
                lock_duration=1_000,
            )
        )  # fmt: skip
    app = DashboardApp(redis_url, CorralBackend(), queues=[queue_name, idle], poll_interval=0.2)
    host = socket.gethostname()[:10]
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.snapshot is not None and len(app.snapshot.queues) == 2)
        await pilot.press("w")  # from the overview: every queue
        await until(pilot, lambda: isinstance(app.screen, WorkersScreen))
        screen = _workers_screen(app)
        await until(pilot, lambda: screen.live is not None and len(screen.live) == 2)
        await pilot.pause(0.1)
        text = visible_text(app)
        assert "workers: all queues" in text
        rows = {int(line.split()[2]): line.split() for line in _lines_with(text, host)}
        assert set(rows) == {p.proc.pid for p in procs}
        assert [rows[p.proc.pid][3] for p in procs] == ["2", "5"]  # concurrency column
        assert all(row[0] == queue_name for row in rows.values())
        (flag,) = _lines_with(text, "no live worker")
        assert flag.split()[0] == idle and "3 waiting" in flag
        assert "2 live workers on 1 host" in text and f"work and no worker: {idle}" in text
        # a: only the queue under the overview's cursor, the idle one
        await pilot.press("a")
        await until(pilot, lambda: screen.live == [])
        await pilot.pause(0.1)
        text = visible_text(app)
        assert f"workers: queue {idle}" in text and not _lines_with(text, host)
        assert _lines_with(text, "no live worker")
        await pilot.press("escape")

        # from the busy queue's screen: its workers; a SIGKILLed one drops out
        app.push_screen(QueueScreen(queue_name))
        await until(pilot, lambda: isinstance(app.screen, QueueScreen))
        await pilot.press("w")
        await until(pilot, lambda: isinstance(app.screen, WorkersScreen))
        screen = _workers_screen(app)
        await until(pilot, lambda: screen.live is not None and len(screen.live) == 2)
        assert not _lines_with(visible_text(app), "no live worker")
        procs[0].kill()
        await until(pilot, lambda: screen.live is not None and len(screen.live) == 1)
        await pilot.pause(0.1)
        text = visible_text(app)
        assert [int(line.split()[2]) for line in _lines_with(text, host)] == [procs[1].proc.pid]
        assert "1 live worker on 1 host" in text


async def test_busy_and_beat_of_a_worker_running_long_jobs(
    redis_url: str, queue_name: str, procs: list[WorkerProcess]
) -> None:
    """A worker (concurrency 3) holding two 60-s jobs shows 2 in flight, and its last beat
    stays fresh (well under half the heartbeat's TTL, unstyled) while the jobs run."""
    procs.append(
        WorkerProcess(
            "support.jobs:ledger_job", queue_name, redis_url, concurrency=3, lock_duration=1_000
        )
    )
    async with Queue(queue_name, redis_url) as queue:
        await queue.add_bulk([("long", {"sleep": 60}) for _ in range(2)])

        async def two_in_flight() -> bool:
            return [w.in_flight for w in await queue.get_workers()] == [2]

        await wait_until(two_in_flight, within=30)
        (worker,) = await queue.get_workers()
        half_ttl_s = (worker.expires - worker.last_beat) / 2000  # yellow from there on
        app = DashboardApp(redis_url, CorralBackend(), queues=[queue_name], poll_interval=0.2)
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: app.snapshot is not None and len(app.snapshot.queues) == 1)
            await pilot.press("w")
            await until(pilot, lambda: isinstance(app.screen, WorkersScreen))
            screen = _workers_screen(app)
            await until(pilot, lambda: screen.live is not None and len(screen.live) == 1)
            beats = []
            for _ in range(2):  # two reads over more than one beat interval, jobs still running
                await pilot.pause(1.5)
                text = visible_text(app)
                (row,) = [r for r in map(str.split, text.splitlines()) if r[:1] == [queue_name]]
                assert row[2:5] == [str(worker.pid), "3", "2"]  # pid, conc, busy (in flight)
                assert row[-1].endswith("s") and not row[-1].endswith("ms"), row
                beats.append(float(row[-1][:-1]))
                beat_cell = screen.query_one(WorkersTable).get_row_at(0)[-1]
                assert beat_cell.style == "", "a fresh beat is not flagged yellow or red"
            assert all(0 <= beat < half_ttl_s for beat in beats), beats
            assert await queue.get_counts("active") == {"active": 2}
            assert [w.in_flight for w in await queue.get_workers()] == [2]


async def test_restarts_of_a_supervised_worker(
    redis_url: str, queue_name: str, procs: list[WorkerProcess]
) -> None:
    """A ``corral worker --supervise --max-jobs 2`` recycles itself; its restarts show."""
    async with Queue(queue_name, redis_url) as queue:
        await queue.add_bulk([("j", {}) for _ in range(5)])
        procs.append(
            WorkerProcess(
                "support.jobs:noop", queue_name, redis_url,
                extra_args=("--max-jobs", "2", "--supervise"),
            )
        )  # fmt: skip

        async def recycled_twice() -> bool:
            return any(w.restarts >= 2 for w in await queue.get_workers())

        await wait_until(recycled_twice, within=60)
        app = DashboardApp(redis_url, CorralBackend(), queues=[queue_name], poll_interval=0.2)
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: app.snapshot is not None and len(app.snapshot.queues) == 1)
            await pilot.press("w")
            await until(pilot, lambda: isinstance(app.screen, WorkersScreen))
            screen = _workers_screen(app)
            await until(pilot, lambda: any((w.restarts or 0) >= 2 for w in screen.live or []))
            await pilot.pause(0.1)
            text = visible_text(app)
            assert " rst " in text
            live = [w for w in await queue.get_workers() if w.restarts >= 2]
            assert live, "the engine's heartbeat says how often it was restarted"
            rows = [line.split() for line in _lines_with(text, str(live[0].pid))]
            assert rows and int(rows[0][6]) == live[0].restarts  # the rst column
            assert max(len(line.rstrip()) for line in text.splitlines()) <= 80
