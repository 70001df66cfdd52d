"""Fixtures that bring the real BullMQ (Node) to the tests, installed once per session; loaded
as a plugin by ``tests/conftest.py``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from support.bullmq_node import NodeDriver, NodeUnavailable, ensure_bullmq


def _modules(major: str) -> Path:
    try:
        return ensure_bullmq(major)
    except NodeUnavailable as exc:
        pytest.skip(f"BullMQ {major} in Node is not available: {exc}")


@pytest.fixture(scope="session", params=["6", "5"], ids=["bullmq6", "bullmq5"])
def bullmq_modules(request: pytest.FixtureRequest) -> Path:
    """``node_modules`` with BullMQ 6.7 or 5.81 (each test runs once per major)."""
    return _modules(str(request.param))


@pytest.fixture(scope="session")
def bullmq6_modules() -> Path:
    """``node_modules`` with BullMQ 6.7 only."""
    return _modules("6")


@pytest.fixture
async def node(bullmq_modules: Path, redis_url: str) -> AsyncIterator[NodeDriver]:
    """A Node process driving BullMQ (5 or 6) against the session server."""
    driver = await NodeDriver(bullmq_modules, redis_url).start()
    try:
        yield driver
    finally:
        await driver.close()


@pytest.fixture
async def node6(bullmq6_modules: Path, redis_url: str) -> AsyncIterator[NodeDriver]:
    """A Node process driving BullMQ 6 against the session server."""
    driver = await NodeDriver(bullmq6_modules, redis_url).start()
    try:
        yield driver
    finally:
        await driver.close()


@pytest.fixture(scope="session")
def bullmq5_modules() -> Path:
    """``node_modules`` with BullMQ 5.81 only."""
    return _modules("5")


@pytest.fixture
async def node5(bullmq5_modules: Path, redis_url: str) -> AsyncIterator[NodeDriver]:
    """A Node process driving BullMQ 5 against the session server."""
    driver = await NodeDriver(bullmq5_modules, redis_url).start()
    try:
        yield driver
    finally:
        await driver.close()
