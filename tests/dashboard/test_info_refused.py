"""R5 where ``INFO`` is refused (an ACL user without ``+info``): the dashboard reads the eviction
policy with ``CONFIG GET`` where that is allowed; where neither is, it never takes the server
for safe. Read-only mode shows that the policy is unknown and why; write mode refuses at start,
as for an evicting policy, unless ``--allow-unsafe-eviction``, and an app already open refuses
every action with the reason, writing nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from pilot import SIZE, make_app, notices, open_first_failed, until, visible_text
from redis.exceptions import NoPermissionError
from support.audit import CommandAudit
from support.server import FaultServer
from workload import finish_jobs

from corral.cli import main
from dashboard.app import DashboardApp
from dashboard.cli import check_at_start
from dashboard.eviction import UNREADABLE, read_policy
from dashboard.screens.confirm import ConfirmScreen
from dashboard.screens.queue import QueueScreen
from engine.queue import Queue

pytestmark = pytest.mark.timeout(60)

TESTS_DIR = Path(__file__).resolve().parent.parent
SECRET = "no-info-secret-5521"
BASE = ("reset", "on", f">{SECRET}", "~corral:*", "&__keyspace@0__:corral:{*}:meta")
USERS: dict[str, tuple[str, ...]] = {
    # the read-only viewer of Z1 without +info (so it may read neither INFO nor CONFIG)
    "viewer": (*BASE, "+@read", "+@connection", "-@dangerous", "+time", "+psubscribe"),
    # everything on Corral's keys but INFO and CONFIG: an operator whose ACL forgot +info
    "operator": (*BASE, "+@all", "-info", "-config"),
    # no INFO, but CONFIG GET: the policy is read from the config instead
    "cfg": (*BASE, "+@read", "+@connection", "-@dangerous", "+time", "+config|get"),
}
UNKNOWN_BANNER = "maxmemory-policy unknown: INFO refused (grant +info)"
NOTICE = "eviction policy unknown: INFO refused for this user (grant +info)"


def as_user(url: str, user: str) -> str:
    """``url`` with ``user`` and its password."""
    return url.replace("redis://", f"redis://{user}:{SECRET}@", 1)


@pytest.fixture
async def failed_jobs(fresh_server: FaultServer, queue_name: str) -> AsyncIterator[Queue]:
    """The test's own server with the users above, and a queue of 2 failed and 3 waiting
    jobs."""
    admin = aioredis.Redis.from_url(fresh_server.url, decode_responses=True)
    try:
        for user, rules in USERS.items():
            await admin.execute_command("ACL", "SETUSER", user, *rules)  # type: ignore[no-untyped-call]
    finally:
        await admin.aclose()
    async with Queue(queue_name, fresh_server.url) as queue:
        for i in range(5):
            await queue.add("send", {"i": i})
        await finish_jobs(queue, complete=0, fail=2)
        yield queue


async def test_the_users_are_refused_info_and_config(
    failed_jobs: Queue, fresh_server: FaultServer
) -> None:
    """The premise, and what the start-up check and the monitor's reader both read (one rule):
    UNREADABLE for users without INFO and CONFIG, the real policy through CONFIG GET for the
    one that has it, and through INFO for a user that may run it."""
    for user in ("viewer", "operator"):
        client = aioredis.Redis.from_url(as_user(fresh_server.url, user), decode_responses=True)
        try:
            with pytest.raises(NoPermissionError, match="'info' command"):
                await client.info("memory")
            with pytest.raises(NoPermissionError, match=r"'config\|get' command"):
                await client.config_get("maxmemory-policy")
        finally:
            await client.aclose()
        assert await _both_read(as_user(fresh_server.url, user)) == UNREADABLE
    fresh_server.config_set("maxmemory-policy", "volatile-lru")
    assert await _both_read(as_user(fresh_server.url, "cfg")) == "volatile-lru"
    assert await _both_read(fresh_server.url) == "volatile-lru"  # the default user: INFO
    assert check_at_start(fresh_server.url, policy=False).policy is None  # not asked for


async def _both_read(url: str) -> str | None:
    """The policy as ``corral dash`` reads it before the app opens, checked to be the one the
    monitor reads at each (re)connect."""
    found = check_at_start(url, policy=True)
    assert not found.cluster_node
    client = aioredis.Redis.from_url(url, decode_responses=True)
    try:
        assert await read_policy(client) == found.policy
    finally:
        await client.aclose()
    return found.policy


async def test_read_only_shows_the_policy_is_unknown_and_why(
    failed_jobs: Queue, fresh_server: FaultServer
) -> None:
    """Read-only as the viewer: the queue is shown, the status bar keeps a banner saying the
    policy is unknown, a warning says why and what to grant, no error, no write."""
    url = as_user(fresh_server.url, "viewer")
    app = make_app(url, failed_jobs.name, read_only=True)
    async with (
        CommandAudit(fresh_server.url) as audit,
        app.run_test(size=SIZE, notifications=True) as pilot,
    ):
        await until(pilot, lambda: "eviction policy unknown" in visible_text(app))
        assert NOTICE in notices(app)  # the toast wraps on screen: its text, whole
        await until(pilot, lambda: app.snapshot is not None and bool(app.snapshot.queues))
        await pilot.pause(0.2)
        text = visible_text(app)
        assert f"{UNKNOWN_BANNER}; only noeviction is safe" in text, text
        assert "READ-ONLY" in text and failed_jobs.name in text
        assert "✖" not in text and "Traceback" not in text
        assert app.snapshot is not None and app.snapshot.error is None
        assert app.snapshot.maxmemory_policy == UNREADABLE
        await pilot.pause(6.0)  # the warning goes, the banner stays
        text = visible_text(app)
        assert "eviction policy unknown" not in text and UNKNOWN_BANNER in text
    audit.assert_no_writes()
    assert SECRET not in text


async def test_read_only_reads_the_policy_with_config_get_where_info_is_refused(
    failed_jobs: Queue, fresh_server: FaultServer
) -> None:
    """A user without INFO but with CONFIG GET: the real (evicting) policy is shown, not
    "unknown"."""
    fresh_server.config_set("maxmemory-policy", "allkeys-random")
    app = make_app(as_user(fresh_server.url, "cfg"), failed_jobs.name, read_only=True)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.snapshot is not None and bool(app.snapshot.queues))
        await pilot.pause(0.2)
        text = visible_text(app)
        assert "maxmemory-policy allkeys-random: may evict jobs; only noeviction is safe" in text
        assert "unknown" not in text and NOTICE not in notices(app)


def test_corral_dash_in_write_mode_refuses_to_start(
    failed_jobs: Queue, fresh_server: FaultServer
) -> None:
    """A real ``corral dash`` as the operator (no +info, no +config) exits 2 at once, saying the
    policy cannot be read and why, the fix and the override; it draws nothing."""
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    env["REDIS_URL"] = as_user(fresh_server.url, "operator")  # the password off the command line
    done = subprocess.run(
        [sys.executable, "-m", "corral", "dash", "--queue", failed_jobs.name],
        cwd=TESTS_DIR,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert done.returncode == 2, (done.stdout, done.stderr)
    for expected in (
        "maxmemory-policy cannot be read",
        "INFO refused for this user (grant +info)",
        "CONFIG GET is refused too",
        "Only 'noeviction' is safe",
        "ACL SETUSER <user> +info",
        "--read-only",
        "--allow-unsafe-eviction",
    ):
        assert expected in done.stderr, done.stderr
    assert SECRET not in done.stderr
    assert done.stdout == ""


def test_read_only_and_the_override_open_the_dashboard(
    failed_jobs: Queue, fresh_server: FaultServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As for an evicting policy, ``--read-only`` and ``--allow-unsafe-eviction`` open the app."""
    started: list[DashboardApp] = []
    monkeypatch.setattr(DashboardApp, "run", lambda app, *a, **k: started.append(app))
    monkeypatch.setenv("REDIS_URL", as_user(fresh_server.url, "operator"))
    assert main(["dash", "--queue", failed_jobs.name]) == 2
    assert main(["dash", "--queue", failed_jobs.name, "--read-only"]) == 0
    assert main(["dash", "--queue", failed_jobs.name, "--allow-unsafe-eviction"]) == 0
    read_only, overridden = started
    assert read_only.read_only and overridden.actions.allow_unsafe_eviction


async def test_an_open_write_mode_app_refuses_every_action_with_the_reason(
    failed_jobs: Queue, fresh_server: FaultServer
) -> None:
    """Write mode opened without the start-up check (as after a reconnect to a node whose ACL
    lacks +info): the banner says actions are refused; each action key is refused with the
    reason before anything is asked, and nothing is written."""
    app = make_app(as_user(fresh_server.url, "operator"), failed_jobs.name)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        screen = await open_first_failed(pilot, app, failed_jobs.name)
        job_id = screen.selected_job()
        assert job_id is not None
        await until(pilot, lambda: f"{UNKNOWN_BANNER}; actions refused" in visible_text(app))
        async with CommandAudit(fresh_server.url) as audit:
            for key in ("r", "d", "R", "p", "c", "o", "x", "P"):
                await pilot.press(key)
                await pilot.pause(0.1)
                assert isinstance(app.screen, QueueScreen), key  # nothing asked
            await pilot.pause(0.3)
        audit.assert_no_writes()
        said = notices(app)
        assert (
            "refused: the server's eviction policy is unknown (INFO refused for this user "
            "(grant +info)); only 'noeviction' is safe" in said
        ), said
        assert "--allow-unsafe-eviction" in said
        assert not any(isinstance(s, ConfirmScreen) for s in app.screen_stack)
        assert "Traceback" not in visible_text(app)
    assert await failed_jobs.get_job_state(job_id) == "failed"
    assert not await failed_jobs.is_paused()
