"""The worker's shared, pipelined connection (``engine.multiplex``) against a real server: replies
matched to their calls, redis-py's errors, scripts reloaded, and lost or silent links."""

from __future__ import annotations

import asyncio
import time

import pytest
import redis.asyncio as aioredis
from redis.exceptions import (
    AuthenticationError,
    ConnectionError,
    NoScriptError,
    ResponseError,
    TimeoutError,
)
from support.proxy import FaultProxy
from support.server import FaultServer

from engine import Queue
from engine.connection import make_client
from engine.multiplex import MultiplexedConnection

SCRIPT = "return {KEYS[1], ARGV[1], redis.call('INCR', KEYS[1])}"


def wire_for(url: str, reply_timeout: float = 10.0) -> MultiplexedConnection:
    client, _ = make_client(url)
    wire = MultiplexedConnection.for_client(client, reply_timeout)
    assert wire is not None
    return wire


async def test_concurrent_calls_each_get_their_own_reply(redis_url: str, queue_name: str) -> None:
    wire = wire_for(redis_url)
    try:
        replies = await asyncio.gather(
            *(wire.execute("ECHO", f"{queue_name}-{i}") for i in range(2_000))
        )
        assert replies == [f"{queue_name}-{i}" for i in range(2_000)]
        assert await wire.execute("INCRBY", queue_name, 5) == 5
        assert await wire.execute("HGETALL", "no-such-key-" + queue_name) == []
    finally:
        await wire.aclose()


async def test_error_replies_are_redis_py_errors_and_the_link_goes_on(
    redis_url: str, queue_name: str
) -> None:
    wire = wire_for(redis_url)
    try:
        await wire.execute("SET", queue_name, "text")
        replies: list[object] = await asyncio.gather(
            wire.execute("INCR", queue_name),
            wire.execute("GET", queue_name),
            return_exceptions=True,
        )
        wrong, right = replies
        assert isinstance(wrong, ResponseError) and "not an integer" in str(wrong)
        assert right == "text"
        with pytest.raises(NoScriptError):
            await wire.execute("EVALSHA", "0" * 40, 0)
    finally:
        await wire.aclose()


async def test_a_flushed_script_is_loaded_again(
    redis_url: str, queue_name: str, redis: aioredis.Redis
) -> None:
    wire = wire_for(redis_url)
    sha = await redis.script_load(SCRIPT)
    try:
        assert await wire.evalsha(sha, SCRIPT, [queue_name], ["a"]) == [queue_name, "a", 1]
        await redis.script_flush()
        assert await wire.evalsha(sha, SCRIPT, [queue_name], ["b"]) == [queue_name, "b", 2]
    finally:
        await wire.aclose()


async def test_password_user_and_database_from_the_url(fresh_server: FaultServer) -> None:
    admin = fresh_server.client()
    admin.acl_setuser("ops", enabled=True, passwords=["+s3cret"], keys=["*"], commands=["+@all"])
    wire = wire_for(f"redis://ops:s3cret@127.0.0.1:{fresh_server.port}/3")
    try:
        await wire.execute("SET", "where", "db3")
        assert await wire.execute("ACL", "WHOAMI") == "ops"
    finally:
        await wire.aclose()
    assert admin.get("where") is None
    admin.select(3)  # type: ignore[no-untyped-call]
    assert admin.get("where") == "db3"
    bad = wire_for(f"redis://ops:wrong@127.0.0.1:{fresh_server.port}/0")
    with pytest.raises(AuthenticationError, match="invalid username-password"):
        await bad.execute("PING")


async def test_a_killed_server_fails_calls_in_flight_and_the_next_call_reconnects(
    fresh_server: FaultServer,
) -> None:
    wire = wire_for(fresh_server.url)
    try:
        assert await wire.execute("PING") == "PONG"
        pending = asyncio.ensure_future(wire.execute("BLPOP", "never", 0))
        await asyncio.sleep(0.1)
        fresh_server.kill()
        with pytest.raises(ConnectionError):
            await asyncio.wait_for(pending, 5)
        with pytest.raises(ConnectionError):
            await wire.execute("PING")
        fresh_server.restart()
        assert await wire.execute("PING") == "PONG"
    finally:
        await wire.aclose()


async def test_a_silent_link_times_out_and_the_next_call_gets_a_fresh_one(
    fresh_server: FaultServer,
) -> None:
    with FaultProxy(fresh_server.port) as proxy:
        wire = wire_for(proxy.url, reply_timeout=1.0)
        try:
            assert await wire.execute("PING") == "PONG"
            assert proxy.freeze_existing() == 1
            began = time.monotonic()
            with pytest.raises(TimeoutError, match="no reply"):
                await wire.execute("PING")
            assert time.monotonic() - began < 5
            assert await wire.execute("PING") == "PONG"
        finally:
            await wire.aclose()


async def test_a_tls_client_keeps_the_pooled_path() -> None:
    client, _ = make_client("rediss://127.0.0.1:6390/0")
    assert MultiplexedConnection.for_client(client) is None


async def test_a_closed_connection_refuses_calls(redis_url: str) -> None:
    wire = wire_for(redis_url)
    await wire.execute("PING")
    await wire.aclose()
    with pytest.raises(ConnectionError, match="closed"):
        await wire.execute("PING")


async def test_a_script_call_is_retried_on_a_fresh_link_when_its_link_goes_silent(
    fresh_server: FaultServer, queue_name: str
) -> None:
    with FaultProxy(fresh_server.port) as proxy:
        wire = wire_for(proxy.url, reply_timeout=1.0)
        sha = fresh_server.client().script_load(SCRIPT)
        try:
            assert await wire.evalsha(sha, SCRIPT, [queue_name], ["a"]) == [queue_name, "a", 1]
            assert proxy.freeze_existing() == 1
            assert await wire.evalsha(sha, SCRIPT, [queue_name], ["b"]) == [queue_name, "b", 2]
        finally:
            await wire.aclose()


async def test_bulk_adds_after_a_script_flush_and_after_a_killed_link(
    redis_url: str, queue_name: str, redis: aioredis.Redis
) -> None:
    async with Queue(queue_name, redis_url) as queue:
        await queue.add("first", {})
        await redis.script_flush()
        added = await queue.add_bulk([("j", i) for i in range(500)])
        assert [job.data for job in added] == list(range(500))
        await redis.client_kill_filter(_type="normal", skipme=True)
        again = await queue.add("after-kill", {"n": 1})
        assert again.data == {"n": 1}
        assert (await queue.get_counts("wait"))["wait"] == 502
