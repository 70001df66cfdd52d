"""R5 for the dashboard: ``corral dash`` in write mode refuses a server whose
``maxmemory-policy`` may evict keys; read-only shows a red banner instead; a policy that turns
unsafe while the dashboard is open is found at the reconnect, and every action is then refused
with the reason, writing nothing (unless ``--allow-unsafe-eviction``)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from pilot import SIZE, make_app, notices, open_first_failed, until, visible_text
from support.audit import CommandAudit
from support.server import FaultServer, ServerFactory
from workload import finish_jobs

from corral.cli import main
from dashboard.app import DashboardApp
from dashboard.corral_backend import CorralBackend
from dashboard.screens.confirm import ConfirmScreen
from dashboard.screens.queue import QueueScreen
from engine.queue import Queue

pytestmark = pytest.mark.timeout(60)

EVICTING = ["allkeys-lru", "volatile-lru", "allkeys-lfu", "volatile-ttl", "allkeys-random"]
TESTS_DIR = Path(__file__).resolve().parent.parent


@pytest.fixture
async def failed_jobs(fresh_server: FaultServer, queue_name: str) -> AsyncIterator[Queue]:
    """A queue of the test's own server with 2 failed and 3 waiting jobs (policy noeviction)."""
    async with Queue(queue_name, fresh_server.url) as queue:
        for i in range(5):
            await queue.add("send", {"i": i})
        await finish_jobs(queue, complete=0, fail=2)
        yield queue


@pytest.mark.parametrize("policy", EVICTING)
def test_corral_dash_refuses_an_evicting_server_before_opening(
    server_factory: ServerFactory, policy: str
) -> None:
    """A real ``corral dash`` (no terminal) exits 2 at once with the reason, the fix and the
    override on stderr, and draws nothing."""
    server = server_factory()
    server.config_set("maxmemory-policy", policy)
    done = subprocess.run(
        [sys.executable, "-m", "corral", "dash", "--redis", server.url, "--queue", "q"],
        cwd=TESTS_DIR,
        env={k: v for k, v in os.environ.items() if k != "REDIS_URL"},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert done.returncode == 2, (done.stdout, done.stderr)
    for expected in (
        f"maxmemory-policy is {policy!r}",
        "Only 'noeviction' is safe",
        "CONFIG SET maxmemory-policy noeviction",
        "redis.conf",
        "--allow-unsafe-eviction",
        "--read-only",
    ):
        assert expected in done.stderr, done.stderr
    assert done.stdout == ""  # the TUI never started: not one escape sequence was drawn


def test_read_only_and_the_override_open_the_dashboard(
    fresh_server: FaultServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On the same server ``--read-only`` and ``--allow-unsafe-eviction`` both open the app;
    the override reaches the action layer and the engine's queues."""
    fresh_server.config_set("maxmemory-policy", "allkeys-lru")
    started: list[DashboardApp] = []
    monkeypatch.setattr(DashboardApp, "run", lambda app, *a, **k: started.append(app))
    dash = ["dash", "--redis", fresh_server.url, "--queue", "q"]
    assert main([*dash, "--read-only"]) == 0
    assert main([*dash, "--allow-unsafe-eviction"]) == 0
    read_only, overridden = started
    assert read_only.read_only and not read_only.allow_unsafe_eviction
    assert overridden.actions.allow_unsafe_eviction
    assert isinstance(overridden.backend, CorralBackend)
    assert overridden.backend.allow_unsafe_eviction


async def test_read_only_dashboard_shows_a_red_banner(
    failed_jobs: Queue, fresh_server: FaultServer
) -> None:
    fresh_server.config_set("maxmemory-policy", "volatile-ttl")
    app = make_app(fresh_server.url, failed_jobs.name, read_only=True)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.snapshot is not None and bool(app.snapshot.queues))
        await pilot.pause(0.1)
        text = visible_text(app)
        assert "maxmemory-policy volatile-ttl: may evict jobs; only noeviction is safe" in text
        assert "READ-ONLY" in text


async def test_policy_turning_unsafe_is_found_at_the_reconnect_and_actions_are_refused(
    failed_jobs: Queue, fresh_server: FaultServer
) -> None:
    """Write mode on a safe server; then the policy becomes allkeys-lru and the connections
    drop: once reconnected the banner shows and every action key is refused with the reason,
    before anything is asked, and nothing is written."""
    app = make_app(fresh_server.url, failed_jobs.name)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_first_failed(pilot, app, failed_jobs.name)
        job_id = screen.selected_job()
        assert job_id is not None and "maxmemory-policy" not in visible_text(app)
        fresh_server.config_set("maxmemory-policy", "allkeys-lru")
        fresh_server.drop_clients()
        await until(
            pilot,
            lambda: (
                app.snapshot is not None
                and app.snapshot.maxmemory_policy == "allkeys-lru"
                and app.snapshot.error is None
            ),
        )
        await pilot.pause(0.1)
        assert "maxmemory-policy allkeys-lru: may evict jobs; actions refused" in visible_text(app)
        async with CommandAudit(fresh_server.url) as audit:
            for key in ("r", "d", "R", "p", "c", "o", "x"):
                await pilot.press(key)
                await pilot.pause(0.1)
                assert isinstance(app.screen, QueueScreen), key  # nothing asked
            await pilot.pause(0.3)
        audit.assert_no_writes()
        said = notices(app)
        assert "refused: the server's maxmemory-policy is 'allkeys-lru'" in said
        assert "only 'noeviction' is safe" in said and "--allow-unsafe-eviction" in said
        assert not any(isinstance(s, ConfirmScreen) for s in app.screen_stack)
        assert await failed_jobs.get_job_state(job_id) == "failed"
        assert not await failed_jobs.is_paused()


async def test_the_override_acts_on_an_evicting_server(
    failed_jobs: Queue, fresh_server: FaultServer
) -> None:
    """``--allow-unsafe-eviction``: the banner says so, and a confirmed retry runs (the
    engine's own check is overridden too)."""
    fresh_server.config_set("maxmemory-policy", "allkeys-lfu")
    app = DashboardApp(
        fresh_server.url,
        CorralBackend(allow_unsafe_eviction=True),
        queues=[failed_jobs.name],
        poll_interval=0.2,
        allow_unsafe_eviction=True,
    )
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_first_failed(pilot, app, failed_jobs.name)
        job_id = screen.selected_job()
        assert job_id is not None
        await until(pilot, lambda: "acting anyway" in visible_text(app))
        await pilot.press("r")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.pause(0.4)  # past the confirmation's debounce
        await pilot.press("tab", "enter")
        await until(pilot, lambda: "retried job" in notices(app))
        assert await failed_jobs.get_job_state(job_id) == "wait"
