"""Connection errors shown in the status bar (Z3) and the offer to turn keyspace notifications
on (D3): Pilot at 80x24 against private servers with ACL users and passwords."""

from __future__ import annotations

import asyncio
import json
import socket
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from pilot import SIZE, make_app, notices, until, visible_text
from support.server import FaultServer
from textual.widgets import Button

from dashboard.model import Mode
from dashboard.screens.confirm import ConfirmScreen
from dashboard.screens.overview import OverviewScreen
from engine.queue import Queue

pytestmark = pytest.mark.timeout(60)

PASSWORD = "s3cret-pw-8812"


def audit_entries(path: Path) -> list[dict[str, str]]:
    """The audit log's entries (none if it was never written)."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def notify_flags(server: FaultServer) -> str:
    """The server's ``notify-keyspace-events`` now."""
    client = server.client()
    try:
        return str(client.config_get("notify-keyspace-events")["notify-keyspace-events"])
    finally:
        client.close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _add_users(url: str) -> None:
    admin = aioredis.Redis.from_url(url, decode_responses=True)
    try:
        await admin.acl_setuser(
            "ops", enabled=True, passwords=[f"+{PASSWORD}"], keys=["~*"], channels=["&*"],
            commands=["+@all"],
        )  # fmt: skip
        await admin.acl_setuser(
            "pinger", enabled=True, passwords=[f"+{PASSWORD}"], keys=["~*"], commands=["+ping"]
        )
    finally:
        await admin.aclose()


def _with_user(url: str, userinfo: str) -> str:
    return url.replace("redis://", f"redis://{userinfo}@", 1)


async def _error_shown(url: str, expected: str) -> str:
    app = make_app(url, "q")
    app.monitor.backoff_cap = 0.5
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.snapshot is not None and app.snapshot.error is not None)
        await pilot.pause(0.1)
        text = visible_text(app)
        assert expected in text, text
        assert "Traceback" not in text
        return text + notices(app)


async def test_each_connection_error_is_named_and_no_password_shows(
    fresh_server: FaultServer,
) -> None:
    await _add_users(fresh_server.url)
    wrong = await _error_shown(
        _with_user(fresh_server.url, "ops:wrong-pw-4471"), "authentication failed"
    )
    assert "wrong-pw-4471" not in wrong and "DISCONNECTED" in wrong
    limited = await _error_shown(_with_user(fresh_server.url, f"pinger:{PASSWORD}"), "NOPERM")
    assert "may not run" in limited and PASSWORD not in limited
    refused = await _error_shown(f"redis://ops:{PASSWORD}@127.0.0.1:{_free_port()}/0", "refused")
    assert PASSWORD not in refused and "ops:***@" in refused
    no_password = await _error_shown(_with_user(fresh_server.url, "ops"), "authentication")
    assert PASSWORD not in no_password
    # a server with a password for everyone, and a URL without one
    admin = aioredis.Redis.from_url(fresh_server.url, decode_responses=True)
    try:
        await admin.config_set("requirepass", PASSWORD)
    finally:
        await admin.aclose()
    required = await _error_shown(fresh_server.url, "authentication required")
    assert PASSWORD not in required


async def test_timeout_is_named(fresh_server: FaultServer) -> None:
    app = make_app(fresh_server.url, "q")
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.snapshot is not None and app.snapshot.mode is Mode.POLLING)
        with fresh_server.paused():  # accepts connections, answers nothing
            async with asyncio.timeout(30):
                while app.snapshot is None or app.snapshot.error is None:
                    await pilot.pause(0.2)
            await pilot.pause(0.1)
            assert "timeout" in visible_text(app)


async def test_notifications_are_offered_and_set_only_when_confirmed(
    fresh_server: FaultServer, audit_path: Path
) -> None:
    async with Queue("q", fresh_server.url) as queue:
        await queue.add("send", {})
    app = make_app(fresh_server.url, "q")
    async with app.run_test(size=SIZE, notifications=True) as pilot:  # toasts on screen
        await until(pilot, lambda: "CONFIG SET notify-keyspace-events Khlz" in notices(app))
        await until(pilot, lambda: "Keyspace notifications are off" in visible_text(app))
        assert "K runs CONFIG SET notify-keyspace-events Khlz after you confirm" in notices(app)
        await pilot.pause(1.0)  # the dashboard polls, and changes nothing by itself
        assert "K: turn on live updates" in visible_text(app)
        assert notify_flags(fresh_server) == ""
        await pilot.press("K")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.pause(0.4)
        assert "Run CONFIG SET notify-keyspace-events Khlz on" in visible_text(app)
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(app.screen, OverviewScreen))
        assert notify_flags(fresh_server) == ""
        assert audit_entries(audit_path) == []
        await pilot.press("K")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.pause(0.4)
        app.screen.query_one("#confirm", Button).press()
        await until(pilot, lambda: app.snapshot is not None and app.snapshot.mode is Mode.LIVE)
        flags = notify_flags(fresh_server)
        assert set("Khlz") <= set(flags)
        await pilot.pause(0.1)
        assert "LIVE" in visible_text(app) and "K: turn on" not in visible_text(app)
    (entry,) = audit_entries(audit_path)
    assert entry["action"] == "config set" and "Khlz" in entry["scope"]


async def test_read_only_never_offers_notifications(fresh_server: FaultServer) -> None:
    app = make_app(fresh_server.url, "q", read_only=True)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.snapshot is not None and app.snapshot.mode is Mode.POLLING)
        await pilot.press("K")
        await pilot.pause(0.5)
        assert not isinstance(app.screen, ConfirmScreen)
        assert "CONFIG SET" not in notices(app) and "K: turn on" not in visible_text(app)
        assert notify_flags(fresh_server) == ""
