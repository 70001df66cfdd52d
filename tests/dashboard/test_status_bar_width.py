"""The status bar at 80 columns: a long URL (a long user name) with the READ-ONLY badge, the
clock and the live-updates hint makes a first line wider than the terminal. It is cut with an
ellipsis instead of wrapping, so the second line (the eviction banner, or the connection error)
stays on screen."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis
from pilot import SIZE, make_app, until, visible_text
from support.server import FaultServer

from engine.queue import Queue

pytestmark = pytest.mark.timeout(60)

USER = "a-rather-long-operator-name"
SECRET = "status-bar-secret-1187"


async def test_a_long_first_line_is_cut_and_the_banner_stays(
    fresh_server: FaultServer, queue_name: str
) -> None:
    admin = aioredis.Redis.from_url(fresh_server.url, decode_responses=True)
    try:
        await admin.execute_command(  # type: ignore[no-untyped-call]
            "ACL", "SETUSER", USER, "on", f">{SECRET}", "~*", "&*", "+@all"
        )
    finally:
        await admin.aclose()
    async with Queue(queue_name, fresh_server.url) as queue:
        await queue.add("send", {})
    fresh_server.config_set("maxmemory-policy", "allkeys-lru")
    url = fresh_server.url.replace("redis://", f"redis://{USER}:{SECRET}@", 1)
    app = make_app(url, queue_name, read_only=True)
    async with app.run_test(size=SIZE) as pilot:
        banner = "maxmemory-policy allkeys-lru: may evict jobs; only noeviction is safe"
        await until(pilot, lambda: banner in visible_text(app))
        lines = visible_text(app).splitlines()
        first, second = lines[0], lines[1]
        assert f"redis://{USER}:***@" in first and "READ-ONLY" in first
        assert first.rstrip().endswith("…"), first  # cut, not wrapped
        assert banner in second
        assert queue_name in visible_text(app)  # the overview below is where it was
        assert SECRET not in visible_text(app)
