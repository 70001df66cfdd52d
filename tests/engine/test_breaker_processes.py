"""The circuit breaker with real ``corral worker`` processes: a dependency that starts failing
trips the queue's breaker across two workers, probes run after the cool-down, the queue
recovers when the dependency does, and the operator's reset overrides a long cool-down."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis.asyncio as aioredis
from support.invariants import assert_invariants
from support.ledger import read_ledger
from support.streams import stream_events
from support.workers import WorkerProcess, wait_until

from engine import Breaker, Queue

DEPENDENCY_JOB = "support.jobs:dependency_job"


class Dependency:
    """The pretend dependency of ``dependency_job``: a file the worker processes read."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.set("up")

    def set(self, state: str) -> None:
        self.path.write_text(state)


@pytest.fixture
def dependency(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Dependency:
    """Up at first; worker processes started afterwards see it through the environment."""
    monkeypatch.setenv("CORRAL_DEPENDENCY", str(tmp_path / "dependency"))
    return Dependency(tmp_path / "dependency")


def _position(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq)


def _between(events: list[dict[str, str]], start: str, end: str | None) -> list[dict[str, str]]:
    """Events after the one with id ``start`` and before the one with id ``end``."""
    low, high = _position(start), _position(end) if end else None
    return [
        e
        for e in events
        if _position(e["_id"]) > low and (high is None or _position(e["_id"]) < high)
    ]


async def _finished(queue: Queue) -> int:
    counts = await queue.get_counts("completed", "failed")
    return counts["completed"] + counts["failed"]


@pytest.mark.timeout(120)
async def test_a_failing_dependency_trips_the_breaker_across_two_workers_then_recovers(
    redis_url: str,
    queue_name: str,
    redis: aioredis.Redis,
    tmp_path: Path,
    dependency: Dependency,
    procs: list[WorkerProcess],
) -> None:
    ledger = tmp_path / "ledger.jsonl"
    settings = Breaker(failure_rate=0.5, min_calls=6, window_ms=30_000, cooldown_ms=1_500, probes=2)
    async with Queue(queue_name, redis_url) as queue:
        await queue.set_breaker(settings)
        for _ in range(2):
            procs.append(
                WorkerProcess(DEPENDENCY_JOB, queue_name, redis_url, ledger=ledger, concurrency=2)
            )
        await queue.add_bulk([("call", {"sleep": 0.1}) for _ in range(8)])

        async def healthy_done() -> bool:
            return (await queue.get_counts("completed"))["completed"] == 8

        await wait_until(healthy_done, within=30)

        dependency.set("down")
        await queue.add_bulk([("call", {"sleep": 0.1}) for _ in range(30)])

        async def reopened() -> bool:  # tripped, probed in vain, and opened again
            states = [e["state"] for e in await stream_events(redis, queue_name, "breaker")]
            return states[:3] == ["open", "half-open", "open"]

        await wait_until(reopened, within=30)
        failed_by = {line["pid"] for line in read_ledger(ledger) if line["kind"] == "fail"}
        assert len(failed_by) == 2, "both workers' failures count into the one window"

        dependency.set("up")

        async def closed() -> bool:
            states = [e["state"] for e in await stream_events(redis, queue_name, "breaker")]
            return "closed" in states

        await wait_until(closed, within=30)

        async def all_done() -> bool:
            return await _finished(queue) == 38

        await wait_until(all_done, within=30)

        events = await stream_events(redis, queue_name)
        changes = [e for e in events if e["event"] == "breaker"]
        first_open = changes[0]
        assert first_open["state"] == "open" and first_open["by"] == "breaker"
        assert int(first_open["calls"]) >= 6
        assert int(first_open["failures"]) >= 0.5 * int(first_open["calls"])
        for change, following in zip(changes, [*changes[1:], None], strict=True):
            end = following["_id"] if following else None
            taken = [e for e in _between(events, change["_id"], end) if e["event"] == "active"]
            if change["state"] == "open":  # no job is taken while the breaker is open
                assert taken == [], change
            elif change["state"] == "half-open":  # only the probes are
                assert 1 <= len(taken) <= settings.probes, change
        assert changes[-1]["state"] == "closed"
        assert changes[-1]["reason"] == "2 probe job(s) succeeded"
        state = await queue.get_breaker()
        assert state is not None and state.state == "closed" and state.trips >= 2
        await assert_invariants(redis, queue_name)
        for proc in procs:
            proc.signal(15)
            assert proc.wait(30) == 0


@pytest.mark.timeout(120)
async def test_the_operator_resets_the_breaker_and_resume_alone_does_not(
    redis_url: str,
    queue_name: str,
    redis: aioredis.Redis,
    tmp_path: Path,
    dependency: Dependency,
    procs: list[WorkerProcess],
) -> None:
    ledger = tmp_path / "ledger.jsonl"
    async with Queue(queue_name, redis_url) as queue:
        await queue.set_breaker(Breaker(failure_rate=0.5, min_calls=4, cooldown_ms=600_000))
        dependency.set("down")
        procs.append(
            WorkerProcess(DEPENDENCY_JOB, queue_name, redis_url, ledger=ledger, concurrency=2)
        )
        await queue.add_bulk([("call", {"sleep": 0.05}) for _ in range(20)])

        async def is_open() -> bool:
            state = await queue.get_breaker()
            return state is not None and state.state == "open"

        await wait_until(is_open, within=30)
        dependency.set("up")
        assert await queue.pause() is True
        assert await queue.resume() is True  # lifts the operator's pause only
        state = await queue.get_breaker()
        assert state is not None and state.state == "open"
        waiting = (await queue.get_counts("wait"))["wait"]
        assert waiting > 0

        assert await queue.reset_breaker() is True

        async def all_done() -> bool:
            return await _finished(queue) == 20

        await wait_until(all_done, within=30)  # long before the 10-minute cool-down
        assert (await queue.get_counts("completed"))["completed"] >= waiting
        events = await stream_events(redis, queue_name)
        opened, reset = [e for e in events if e["event"] == "breaker"]
        assert (opened["state"], reset["state"], reset["by"]) == ("open", "closed", "operator")
        assert reset["reason"] == "reset by operator"
        held = [e for e in _between(events, opened["_id"], reset["_id"]) if e["event"] == "active"]
        assert held == []
        await assert_invariants(redis, queue_name)
