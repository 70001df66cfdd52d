"""R3 with ``durable=True``: an add returns only once the server fsynced it to its AOF
(``WAITAOF 1 0 <timeout>``); a server that cannot confirm (AOF off, or no fsync within the
timeout) makes the add raise ``DurabilityNotConfirmed``, with the added jobs kept and named."""

from __future__ import annotations

import pytest
from support.invariants import assert_invariants
from support.server import ServerFactory

from engine import DurabilityNotConfirmed, InvalidJobOptions, Queue

pytestmark = pytest.mark.timeout(60)


@pytest.mark.parametrize("persistence", ["aof-always", "aof-everysec"])
async def test_r3_durable_adds_are_confirmed_by_an_aof_server(
    server_factory: ServerFactory, queue_name: str, persistence: str
) -> None:
    """Confirmed adds survive a SIGKILL of the server right after they return."""
    server = server_factory(persistence=persistence)
    async with Queue(queue_name, server.url) as queue:
        one = await queue.add("one", {"n": 1}, durable=True)
        bulk = await queue.add_bulk([("b", {"n": i}) for i in range(50)], durable=True)
    async with Queue(queue_name, server.url, durable=True) as queue:
        default = await queue.add("by-default", {})
        server.kill()  # at once: no chance for a later everysec fsync
    server.start()
    async with Queue(queue_name, server.url) as queue:
        ids = {one.id, default.id, *(j.id for j in bulk)}
        assert set(await queue.get_job_ids("wait", 0, -1)) == ids
        await assert_invariants(queue.client, queue_name, wait=len(ids))


async def test_r3_durable_add_without_aof_raises_and_keeps_the_job(
    server_factory: ServerFactory, queue_name: str
) -> None:
    """AOF off: WAITAOF is refused, the add raises naming the fix, and the job is added."""
    server = server_factory(persistence="none")
    async with Queue(queue_name, server.url) as queue:
        with pytest.raises(DurabilityNotConfirmed, match="appendonly yes") as info:
            await queue.add("j", {}, durable=True)
        (job,) = info.value.jobs
        assert await queue.get_job_state(job.id) == "wait"
        assert str(job.id) in str(info.value)
        plain = await queue.add("plain", {})  # without durable=True nothing changes
        await assert_invariants(queue.client, queue_name, wait=2)
        assert plain.id != job.id


async def test_r3_durable_add_not_fsynced_within_the_timeout_raises(
    server_factory: ServerFactory, queue_name: str
) -> None:
    """AOF on but ``appendfsync no``: no fsync is confirmed within the timeout, so the add
    raises naming the timeout; every job of the batch is in the error and in the queue."""
    server = server_factory(persistence="aof-everysec")
    server.config_set("appendfsync", "no")
    async with Queue(queue_name, server.url, durable_timeout_ms=200) as queue:
        with pytest.raises(DurabilityNotConfirmed, match="durable_timeout_ms=200") as info:
            await queue.add_bulk([("j", {}) for _ in range(3)], durable=True)
        assert len(info.value.jobs) == 3
        assert await queue.get_counts("wait") == {"wait": 3}


@pytest.mark.parametrize(
    ("kwargs", "word"),
    [({"durable": 1}, "durable"), ({"durable_timeout_ms": 0}, "durable_timeout_ms")],
)
def test_r3_durable_options_are_checked(
    redis_url: str, queue_name: str, kwargs: dict[str, object], word: str
) -> None:
    with pytest.raises(InvalidJobOptions, match=word):
        Queue(queue_name, redis_url, **kwargs)  # type: ignore[arg-type]
