"""The fault proxy itself, against the real server: pass, latency, partition, half-open,
reset, refuse and retarget, each switched while clients are connected."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from support.proxy import FaultProxy
from support.server import FaultServer, ServerFactory

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def proxy(fresh_server: FaultServer) -> Iterator[FaultProxy]:
    with FaultProxy(fresh_server.port) as running:
        yield running


def _client(proxy: FaultProxy, timeout: float = 5.0) -> redis.Redis:
    """A client that does not retry, so each fault shows as it is."""
    return redis.Redis(
        port=proxy.port,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
        decode_responses=True,
    )


def test_passes_commands_through(proxy: FaultProxy) -> None:
    client = _client(proxy)
    assert client.set("k", "v" * 200_000)
    assert client.get("k") == "v" * 200_000
    assert proxy.accepted == 1 and proxy.open_connections == 1
    client.close()


def test_latency_delays_each_direction(proxy: FaultProxy) -> None:
    client = _client(proxy)
    client.ping()
    proxy.latency(150)
    started = time.monotonic()
    client.ping()
    assert time.monotonic() - started >= 0.3  # there and back
    proxy.latency(0)
    started = time.monotonic()
    client.ping()
    assert time.monotonic() - started < 0.3
    client.close()


def test_partition_holds_traffic_until_healed(proxy: FaultProxy) -> None:
    impatient = _client(proxy, timeout=0.5)
    patient = _client(proxy, timeout=10)
    impatient.ping()
    patient.ping()
    proxy.blackhole()
    with pytest.raises(redis.TimeoutError):
        impatient.ping()
    with pytest.raises(redis.TimeoutError):
        _client(proxy, timeout=0.5).ping()  # new connections are accepted but silent too
    answered: list[object] = []
    waiter = threading.Thread(target=lambda: answered.append(patient.incr("n")))
    waiter.start()
    time.sleep(0.5)
    assert answered == []
    proxy.heal()
    waiter.join(10)
    assert answered == [1]  # held, then delivered: the command ran once
    assert _client(proxy).get("n") == "1"


def test_freeze_existing_leaves_new_connections_working(proxy: FaultProxy) -> None:
    old = _client(proxy, timeout=0.5)
    old.ping()
    assert proxy.freeze_existing() == 1
    with pytest.raises(redis.TimeoutError):
        old.ping()
    fresh = _client(proxy, timeout=2)
    assert fresh.ping()


def test_reset_and_refuse(proxy: FaultProxy) -> None:
    raw = socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
    raw.sendall(b"PING\r\n")
    assert raw.recv(100) == b"+PONG\r\n"
    client = _client(proxy)
    client.ping()
    assert proxy.reset() == 2
    with pytest.raises(ConnectionResetError):
        raw.recv(100)  # RST, not an orderly close
    assert client.ping()  # redis-py notices the dead connection and opens a new one
    assert proxy.accepted == 3
    proxy.refuse(reset_open=True)
    with pytest.raises(redis.ConnectionError, match="refused"):
        _client(proxy).ping()
    proxy.accept()
    assert _client(proxy).ping()


def test_retarget_moves_new_connections_only(
    proxy: FaultProxy, fresh_server: FaultServer, server_factory: ServerFactory
) -> None:
    other = server_factory()
    for server, name in ((fresh_server, "first"), (other, "second")):
        direct = server.client()
        direct.set("who", name)
        direct.close()
    before = _client(proxy)
    assert before.get("who") == "first"
    proxy.retarget(other.port)
    after = _client(proxy)
    assert after.get("who") == "second"  # a new connection reaches the new target
    assert before.get("who") == "first"  # the open one still leads to the old server
    assert proxy.accepted == 2 and len(proxy.accept_times) == 2
    before.close()
    after.close()
