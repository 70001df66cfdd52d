"""``corral breaker reset|remove QUEUE`` against a real server: a tripped breaker is closed,
then removed; an unknown queue exits 2."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from engine import Breaker, Queue, commands
from engine.options import Retention

TESTS_DIR = Path(__file__).resolve().parent
pytestmark = pytest.mark.timeout(60)


def _breaker(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "corral", "breaker", *args],
        cwd=TESTS_DIR,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=30,
    )


async def trip_breaker(queue: Queue) -> None:
    """Two jobs that fail for good, through the engine's own scripts: 2 of 2 failed."""
    await queue.add_bulk([("call", {}), ("call", {})])
    lease = commands.Lease("test-token", 30_000, "test-worker", 2)
    taken = await commands.move_to_active(queue.scripts, queue.keys, lease)
    for job in taken.jobs:
        await commands.fail_job(
            queue.scripts, queue.keys, job.id, job.token, "boom", "[]", -1, Retention(-1, 0)
        )


async def test_reset_then_remove(redis_url: str, queue_name: str) -> None:
    async with Queue(queue_name, redis_url) as queue:
        await queue.set_breaker(Breaker(min_calls=2, cooldown_ms=600_000, probes=1))
        await trip_breaker(queue)
        state = await queue.get_breaker()
        assert state is not None and state.state == "open"

        done = _breaker("reset", queue_name, "--redis", redis_url)
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == f"{queue_name}: circuit breaker closed"
        state = await queue.get_breaker()
        assert state is not None and state.state == "closed"

        again = _breaker("reset", queue_name, "--redis", redis_url)
        assert again.returncode == 0 and "was not open" in again.stdout

        gone = _breaker("remove", queue_name, "--redis", redis_url)
        assert (
            gone.returncode == 0 and gone.stdout.strip() == f"{queue_name}: circuit breaker removed"
        )
        assert await queue.get_breaker() is None

    missing = _breaker("reset", queue_name + "-nope", "--redis", redis_url)
    assert missing.returncode == 2 and "not found" in missing.stderr
