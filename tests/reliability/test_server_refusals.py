"""The server refuses writes: out of memory (R6) and MISCONF after a failed save (R8).
Every transition is all-or-nothing, and a worker rides the refusal out and finishes its job."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.exceptions import OutOfMemoryError, ResponseError
from support.invariants import assert_invariants
from support.populate import every_state
from support.server import FaultServer, ServerFactory
from support.streams import stream_events
from support.workers import running_worker, wait_until

from engine import Job, Queue, commands
from engine.connection import WritesRefused
from engine.options import Retention

pytestmark = pytest.mark.timeout(60)

KEEP = Retention(-1, 0)


async def _dump_all(client: aioredis.Redis) -> dict[str, Any]:
    """Every key with its serialized value: equal dumps mean nothing was written."""
    out: dict[str, Any] = {}
    async for key in client.scan_iter(count=1000):
        out[str(key)] = await client.dump(key)
    return out


def _transitions(queue: Queue, ids: dict[str, str]) -> dict[str, Callable[[], Awaitable[Any]]]:
    """Every state-changing call, through the public API and each script directly."""
    s, k, lease = queue.scripts, queue.keys, commands.Lease("t", 30_000, "w", 1)
    active, token = ids["active"], "populate:1"
    return {
        "add": lambda: queue.add("j", {}),
        "add_bulk": lambda: queue.add_bulk([("j", {})]),
        "pause": queue.pause,
        "resume": queue.resume,
        "retry_job": lambda: queue.retry_job(ids["failed"]),
        "retry_jobs": lambda: queue.retry_jobs(),
        "promote_job": lambda: queue.promote_job(ids["delayed"]),
        "promote_jobs": lambda: queue.promote_jobs(),
        "remove_job": lambda: queue.remove_job(ids["wait"]),
        "clean": lambda: queue.clean(0, 10, "completed"),
        "drain": lambda: queue.drain(delayed=True),
        "obliterate": lambda: queue.obliterate(force=True),
        "move_to_active": lambda: commands.move_to_active(s, k, lease),
        "complete_job": lambda: commands.complete_job(s, k, active, token, "1", KEEP),
        "fail_job": lambda: commands.fail_job(s, k, active, token, "x", "[]", -1, KEEP),
        "extend_locks": lambda: commands.extend_locks(s, k, 1000, [(active, token)]),
        "recover_stalled": lambda: commands.recover_stalled(s, k, 1, 1),
        "hand_back_job": lambda: commands.hand_back_job(s, k, active, token),
        "update_progress": lambda: commands.update_progress(s, k, active, token, "5"),
    }


async def _ids_by_state(queue: Queue) -> dict[str, str]:
    states = ("wait", "delayed", "active", "failed")
    return {state: (await queue.get_job_ids(state, 0, 0))[0] for state in states}


async def test_r6_out_of_memory_refuses_every_transition_whole(
    fresh_server: FaultServer,
) -> None:
    """R6: at maxmemory with noeviction every transition is refused before it writes anything:
    all keys are byte-for-byte unchanged, and the error says the server is out of memory."""
    async with Queue("oom", fresh_server.url) as queue:
        await every_state(queue)
        ids = await _ids_by_state(queue)
        before = await _dump_all(queue.client)
        fresh_server.config_set("maxmemory", 1)
        try:
            for name, call in _transitions(queue, ids).items():
                with pytest.raises(OutOfMemoryError, match="maxmemory"):
                    await call()
                assert await _dump_all(queue.client) == before, f"{name} wrote under OOM"
        finally:
            fresh_server.config_set("maxmemory", 0)
        await assert_invariants(queue.client, "oom", wait=4, active=1, failed=2)


def _misconf(server: FaultServer) -> None:
    """Make the next background save fail (its directory cannot take files), so the server
    refuses writes with MISCONF until a save succeeds."""
    client = server.client()
    try:
        client.config_set("save", "3600 1")  # MISCONF applies only with save points set
        client.config_set("dir", "/proc")
        client.bgsave()
    finally:
        client.close()


def _writable(server: FaultServer) -> None:
    client = server.client()
    try:
        client.config_set("dir", str(server.data_dir))
        client.bgsave()
    finally:
        client.close()


async def _refused(client: aioredis.Redis) -> bool:
    try:
        await client.set("probe", "1")
    except WritesRefused as exc:
        return "RDB" in str(exc)  # the message names the failed save
    await client.delete("probe")
    return False


async def _writes_allowed(client: aioredis.Redis) -> bool:
    try:
        await client.set("probe", "1")
    except ResponseError:
        return False
    return True


@pytest.mark.parametrize("fault", ["oom", "misconf"])
async def test_r6_r8_worker_rides_out_refused_writes_and_finishes(
    server_factory: ServerFactory, fault: str, caplog: pytest.LogCaptureFixture
) -> None:
    """R6/R8: writes are refused (OOM, or MISCONF after a failed save) while a job runs and for
    a while after it finished. The worker keeps running, retries the completion with backoff,
    records it once when writes are allowed again, and takes the next job."""
    server = server_factory(extra_args=["--enable-protected-configs", "local"])
    runs: list[str] = []

    async def process(job: Job) -> Any:
        runs.append(job.id)
        await asyncio.sleep(float(job.data.get("sleep", 0)))

    caplog.set_level(logging.INFO, logger="corral.worker")
    async with Queue("refused", server.url) as queue:
        first = await queue.add("first", {"sleep": 0.5})
        async with running_worker(
            "refused", process, server.url, lock_duration=5000, stalled_interval=200
        ):
            await wait_until(lambda: _started(runs, 1), within=20)
            if fault == "oom":
                server.config_set("maxmemory", 1)
            else:
                await asyncio.to_thread(_misconf, server)
                await wait_until(lambda: _refused(queue.client), within=20)
            await asyncio.sleep(1.5)  # the job finished meanwhile; its completion is refused
            assert await queue.get_totals() == (0, 0)
            if fault == "oom":
                server.config_set("maxmemory", 0)
            else:
                await asyncio.to_thread(_writable, server)
                await wait_until(lambda: _writes_allowed(queue.client), within=20)
            await wait_until(lambda: _done(queue, 1), within=20)
            second = await queue.add("second", {})
            await wait_until(lambda: _done(queue, 2), within=20)
        assert runs == [first.id, second.id]
        assert await stream_events(queue.client, "refused", "stalled") == []
        with contextlib.suppress(ResponseError):
            await queue.client.delete("probe")
        await assert_invariants(queue.client, "refused", completed=2)
    unexpected = [r for r in caplog.records if "unexpected" in r.getMessage()]
    assert unexpected == []


async def _started(runs: list[str], n: int) -> bool:
    return len(runs) >= n


async def _done(queue: Queue, n: int) -> bool:
    return (await queue.get_totals())[0] >= n
