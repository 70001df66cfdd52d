"""Shared fixtures: a session-wide server, per-test URLs, queue names and clients.

Set ``CORRAL_TEST_REDIS_URL`` (loopback only) to run against a server you started yourself
(without xdist workers: ``-n 0``); otherwise each test process starts a private one, so under
``pytest -n 2`` each xdist worker has a server of its own (on a free port, in a temporary
directory). ``fresh_server`` and ``server_factory`` always start private servers, which tests
may kill and restart.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from support.server import (
    EXTERNAL_URL_ENV,
    ExternalServer,
    FaultServer,
    RunningServer,
    ServerFactory,
    external_redis_url,
)
from support.workers import WorkerProcess

pytest_plugins = [
    "support.bullmq_fixtures",  # the real BullMQ in Node, for tests/bullmq_queues
    "support.invariant_plugin",  # the invariant check after each reliability/engine scenario
]


def pytest_configure(config: pytest.Config) -> None:
    """Refuse a non-loopback ``CORRAL_TEST_REDIS_URL`` before any test runs, and refuse one
    shared by several xdist workers: the suite's tests count the session server's commands,
    flush its scripts and kill its clients, which only works when one test at a time uses it
    (without it, each worker process starts a server of its own)."""
    try:
        url = external_redis_url()
    except ValueError as exc:
        raise pytest.UsageError(str(exc)) from None
    distributed = config.getoption("dist", "no") != "no" and bool(config.getoption("tx", None))
    if url is not None and distributed:
        raise pytest.UsageError(
            f"{EXTERNAL_URL_ENV} is one server for every xdist worker, and the tests need the "
            "session server to themselves: run without workers (-n 0)"
        )


@pytest.fixture(scope="session")
def server() -> Iterator[RunningServer]:
    """A running server shared by the session's tests (no persistence, notifications off);
    session fixtures are per process, so each xdist worker starts its own."""
    url = external_redis_url()
    if url is not None:
        yield ExternalServer(url)
        return
    with FaultServer() as embedded:
        yield embedded


@pytest.fixture
def redis_url(server: RunningServer) -> str:
    """URL of the session server."""
    return server.url


@pytest.fixture
def queue_name() -> str:
    """A queue name no other test uses."""
    return "t-" + uuid.uuid4().hex[:12]


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    """An asyncio client (``decode_responses=True``) to the session server, closed afterwards."""
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
def server_factory() -> Iterator[ServerFactory]:
    """Start private ``FaultServer``s with any constructor arguments; all closed at teardown."""
    started: list[FaultServer] = []

    def make(*args: Any, **kwargs: Any) -> FaultServer:
        fault_server = FaultServer(*args, **kwargs)
        started.append(fault_server)
        return fault_server.start()

    yield make
    for fault_server in started:
        fault_server.close()


@pytest.fixture
def fresh_server(server_factory: ServerFactory) -> FaultServer:
    """A private server of this test's own, which it may kill, pause and restart."""
    return server_factory()


@pytest.fixture
def procs() -> Iterator[list[WorkerProcess]]:
    """``corral worker`` processes a test starts; each is stopped when the test ends."""
    started: list[WorkerProcess] = []
    yield started
    for proc in started:
        proc.stop()


@pytest.fixture(autouse=True)
def audit_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Where a dashboard under test appends its audit entries: a file of the test's own, never
    the user's state directory."""
    path = tmp_path / "state" / "corral" / "audit.log"
    monkeypatch.setenv("CORRAL_AUDIT_LOG", str(path))
    return path
