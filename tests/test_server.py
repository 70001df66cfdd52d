"""Tests of the embedded server, its fixtures and ``corral server``, on the real binary."""

from __future__ import annotations

import os
import select
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import redis.asyncio as aioredis
from support.server import (
    EmbeddedServer,
    FaultServer,
    RunningServer,
    ServerError,
    ServerFactory,
    find_running_server,
    server_binary,
)

import engine.server
from corral.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port on 127.0.0.1 held by a listening socket for the whole test."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port: int = sock.getsockname()[1]
        yield port


# -- fixtures ---------------------------------------------------------------------------------


async def test_session_server_and_client(
    server: RunningServer, redis_url: str, redis: aioredis.Redis, queue_name: str
) -> None:
    assert redis_url == server.url
    assert urlsplit(redis_url).hostname in {"127.0.0.1", "localhost"}
    assert await redis.ping()
    await redis.set(f"{queue_name}:k", "v", ex=60)
    assert await redis.get(f"{queue_name}:k") == "v"  # decode_responses=True


def test_queue_names_are_unique(queue_name: str) -> None:
    assert queue_name.startswith("t-")
    assert len(queue_name) == 14


# -- EmbeddedServer ---------------------------------------------------------------------------


def test_starts_on_loopback_and_answers_ping(fresh_server: FaultServer) -> None:
    parts = urlsplit(fresh_server.url)
    assert parts.scheme == "redis"
    assert parts.hostname == "127.0.0.1"
    assert parts.port == fresh_server.port
    assert parts.path == "/0"
    assert fresh_server.is_running
    assert fresh_server.pid is not None
    assert fresh_server.ping()
    assert find_running_server(fresh_server.url)
    client = fresh_server.client()
    try:
        config = client.config_get("*")
        assert str(config["bind"]).split() == ["127.0.0.1"]
        assert config["appendonly"] == "no"
        assert config["save"] == ""
        assert config["notify-keyspace-events"] == ""
        assert config["maxmemory-policy"] == "noeviction"
    finally:
        client.close()


def test_stop_and_close_clean_up(tmp_path: Path) -> None:
    owned = EmbeddedServer().start()
    data_dir = owned.data_dir
    assert owned.log_path.exists()
    owned.stop()
    assert not owned.is_running
    assert owned.returncode == 0
    assert not find_running_server(owned.url)
    owned.close()
    assert not data_dir.exists()
    with pytest.raises(ServerError, match="closed"):
        owned.start()

    given = tmp_path / "data"
    with EmbeddedServer(data_dir=given) as kept:
        assert kept.data_dir == given.resolve()
    assert given.is_dir()  # a directory we were given is never removed


def test_kill_then_restart_with_aof_keeps_data(server_factory: ServerFactory) -> None:
    srv = server_factory(persistence="aof-always")
    port = srv.port
    client = srv.client()
    client.set("survivor", "yes")
    client.close()

    srv.kill()
    assert not srv.is_running
    assert srv.returncode == -signal.SIGKILL
    assert not find_running_server(srv.url)

    srv.restart()
    assert srv.port == port
    client = srv.client()
    try:
        assert client.get("survivor") == "yes"
        assert client.config_get("appendfsync")["appendfsync"] == "always"
    finally:
        client.close()


def test_restart_without_persistence_starts_empty(fresh_server: FaultServer) -> None:
    client = fresh_server.client()
    client.set("gone", "1")
    client.close()
    fresh_server.kill()
    fresh_server.restart()
    client = fresh_server.client()
    try:
        assert client.get("gone") is None
    finally:
        client.close()


def test_config_set_and_notifications(server_factory: ServerFactory) -> None:
    srv = server_factory(notify_keyspace_events="KEA")
    client = srv.client()
    try:
        flags = client.config_get("notify-keyspace-events")["notify-keyspace-events"]
        assert set(str(flags)) == set("AKE")
        srv.config_set("notify-keyspace-events", "")
        assert client.config_get("notify-keyspace-events")["notify-keyspace-events"] == ""
        srv.config_set("maxmemory", 64 * 1024 * 1024)
        assert client.config_get("maxmemory")["maxmemory"] == str(64 * 1024 * 1024)
    finally:
        client.close()


def test_pause_and_resume(fresh_server: FaultServer) -> None:
    with fresh_server.paused():
        assert fresh_server.is_running
        assert not fresh_server.ping(timeout=0.2)
    assert fresh_server.ping(timeout=2)


def test_drop_clients_and_debug(fresh_server: FaultServer) -> None:
    victim = fresh_server.client()
    victim.ping()
    assert fresh_server.drop_clients() >= 1
    victim.close()
    fresh_server.debug_sleep(0)


def test_bad_persistence_is_a_clear_value_error() -> None:
    with pytest.raises(ValueError, match=r"persistence 'aof' is invalid: expected one of 'none'"):
        EmbeddedServer(persistence="aof")  # type: ignore[arg-type]


def test_bad_port_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="port"):
        EmbeddedServer(port=70000)


def test_env_override_of_the_binary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    link = tmp_path / "redis-server"
    link.symlink_to(server_binary())
    monkeypatch.setenv(engine.server.SERVER_BIN_ENV, str(link))
    assert server_binary() == link
    with EmbeddedServer() as srv:
        assert srv.binary == link
        assert srv.command_line()[0] == str(link)
        assert srv.ping()

    monkeypatch.setenv(engine.server.SERVER_BIN_ENV, str(tmp_path / "missing"))
    with pytest.raises(ServerError, match="CORRAL_SERVER_BIN"):
        EmbeddedServer()


def test_a_taken_free_port_is_replaced(busy_port: int, monkeypatch: pytest.MonkeyPatch) -> None:
    ports = iter([busy_port, busy_port])
    real_free_port = engine.server._free_port
    monkeypatch.setattr(engine.server, "_free_port", lambda: next(ports, None) or real_free_port())
    with EmbeddedServer() as srv:
        assert srv.port != busy_port
        assert srv.ping()


def test_a_taken_fixed_port_is_an_error(busy_port: int) -> None:
    srv = EmbeddedServer(port=busy_port)
    try:
        with pytest.raises(ServerError, match="already in use"):
            srv.start()
        assert not srv.is_running
    finally:
        srv.close()


def test_find_running_server_on_nothing() -> None:
    assert not find_running_server(f"redis://127.0.0.1:{_closed_port()}/0", timeout=0.2)
    assert not find_running_server("not a url")


# -- corral CLI -------------------------------------------------------------------------------


def _corral(*args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-m", "corral", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _first_line(proc: subprocess.Popen[str], timeout: float = 20.0) -> str:
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    assert ready, "corral server printed nothing"
    return proc.stdout.readline().strip()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_cli_server_prints_url_and_stops_on_signal(sig: signal.Signals) -> None:
    proc = _corral("server")
    try:
        url = _first_line(proc)
        assert urlsplit(url).hostname == "127.0.0.1"
        assert url.startswith("redis://127.0.0.1:")
        assert url.endswith("/0")
        assert find_running_server(url, timeout=2)
        proc.send_signal(sig)
        assert proc.wait(timeout=20) == 0
        assert not find_running_server(url, timeout=0.5)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.communicate()


def test_cli_server_with_dir_and_persistence(tmp_path: Path) -> None:
    port = _closed_port()
    proc = _corral(
        "server", "--port", str(port), "--persistence", "aof-always", "--dir", str(tmp_path)
    )
    try:
        assert _first_line(proc) == f"redis://127.0.0.1:{port}/0"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.communicate()
    assert (tmp_path / "appendonlydir").is_dir()
    assert (tmp_path / "server.log").is_file()


def test_cli_import_does_not_load_textual() -> None:
    code = "import sys, corral.cli; sys.exit('textual' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=False)
    assert result.returncode == 0


def test_cli_worker_dash_demo_flags() -> None:
    parser = build_parser()
    args = parser.parse_args(
        ["worker", "app.tasks:send", "--queue", "emails", "--concurrency", "4",
         "--redis", "redis://127.0.0.1:1/0", "--lock-duration", "30000",
         "--stalled-interval", "5000", "--max-stalled-count", "2", "--shutdown-grace", "1.5"]
    )  # fmt: skip
    assert args.command == "worker"
    assert args.target == "app.tasks:send"
    assert (args.queue, args.concurrency, args.prefix) == ("emails", 4, "corral")
    assert (args.lock_duration, args.stalled_interval) == (30000, 5000)
    assert (args.max_stalled_count, args.shutdown_grace) == (2, 1.5)

    args = parser.parse_args(["dash", "--queue", "a", "--queue", "b", "--read-only"])
    assert (args.queues, args.read_only) == (["a", "b"], True)
    assert parser.parse_args(["dash"]).queues is None

    args = parser.parse_args(["demo", "--no-dash", "--duration", "3"])
    assert (args.redis, args.no_dash, args.duration) == (None, True, 3.0)

    for bad in (["worker", "nocolon", "--queue", "q"], ["worker", "m:f", "--queue", "a b"]):
        with pytest.raises(SystemExit):
            parser.parse_args(bad)
