"""D4 on a keyspace of 1,000,000 waiting jobs (every job is a key): the monitor shows the big queue
before its SCAN for queues has walked the keyspace, and the queues that SCAN finds one step at a
time while it goes on; it reads only bounded ranges, writes nothing, and its memory does not grow
with the queue's length (RELIABILITY.md D4).

The jobs are 5,000 added by the engine, then copies of the first one's hash pushed to ``wait``
by one script per 50,000 (a few seconds in all).
"""

from __future__ import annotations

import asyncio
import tracemalloc
from collections.abc import Callable

import pytest
from support.audit import CommandAudit
from support.server import ServerFactory

from dashboard.corral_backend import SAMPLE_KEYS, CorralBackend
from dashboard.model import DashboardSnapshot
from dashboard.monitor import QueueMonitor
from dashboard.screens.queue import PAGE_SIZE
from engine import Queue

pytestmark = pytest.mark.timeout(120)

BIG = "big"
FEW, MANY = 5_000, 1_000_000
SMALL_QUEUES = 50
"""One-job queues: the SCAN finds them spread over its steps (1,000,000 keys are ~200 steps)."""
PRODUCER = "d4-producer"
CLONE_CHUNK = 50_000
MEMORY_GROWTH_LIMIT = 2_000_000
"""Bytes the monitor's traced peak may grow by from 5,000 to 1,000,000 waiting jobs (it measures
about the same; the limit only leaves room for allocator noise)."""

CLONE = """
-- KEYS: the job hash to copy, the queue's wait list, its id counter
-- ARGV: the first new id, how many jobs, the job key prefix
local fields = redis.call('HGETALL', KEYS[1])
local first, count, prefix = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
local ids = {}
for id = first, first + count - 1 do
  redis.call('HSET', prefix .. id, unpack(fields))
  ids[#ids + 1] = id
  if #ids == 1000 then
    redis.call('LPUSH', KEYS[2], unpack(ids))
    ids = {}
  end
end
if #ids > 0 then redis.call('LPUSH', KEYS[2], unpack(ids)) end
redis.call('SET', KEYS[3], first + count - 1)
"""


async def _fill(url: str, jobs: int) -> None:
    """``BIG`` holds ``jobs`` waiting jobs: the first ``FEW`` added by the engine, then copies."""
    async with Queue(BIG, f"{url}?client_name={PRODUCER}") as queue:
        have = await queue.client.llen(queue.keys.wait)
        if have == 0:
            await queue.add_bulk([("bulk", {"i": i}) for i in range(min(jobs, FEW))])
            have = min(jobs, FEW)
        keys = [queue.keys.job("1"), queue.keys.wait, queue.keys.id]
        for first in range(have + 1, jobs + 1, CLONE_CHUNK):
            count = min(CLONE_CHUNK, jobs + 1 - first)
            await queue.client.eval(CLONE, 3, *keys, first, count, queue.keys.job_prefix)  # type: ignore[misc]
        assert await queue.client.llen(queue.keys.wait) == jobs


async def _small_queues(url: str) -> set[str]:
    names = {f"small-{i:02d}" for i in range(SMALL_QUEUES)}
    for name in names:
        async with Queue(name, f"{url}?client_name={PRODUCER}") as queue:
            await queue.add("one", {})
    return names


async def _watch(
    monitor: QueueMonitor, note: Callable[[DashboardSnapshot], bool]
) -> DashboardSnapshot:
    """Iterate the monitor's snapshots until ``note(snapshot)`` says enough. ``note`` runs as
    each snapshot arrives, before anything else can run: what it reads of ``monitor`` is as it
    was when the snapshot was made."""
    stream = monitor.snapshots()
    try:
        async with asyncio.timeout(60):
            async for snapshot in stream:
                if note(snapshot):
                    return snapshot
    finally:
        await stream.aclose()
    raise AssertionError("the monitor stopped")


async def _read_pages(backend: CorralBackend, url: str, jobs: int) -> None:
    """What the queue screen reads on the big queue: its first, middle and last pages."""
    async with Queue(BIG, url) as reader:
        for start in (0, jobs // 2, jobs - PAGE_SIZE):
            page = await backend.read_page(reader.client, BIG, "wait", start, PAGE_SIZE)
            assert len(page.rows) == PAGE_SIZE


async def test_big_queue_shows_before_the_scan_ends_with_bounded_reads(
    server_factory: ServerFactory,
) -> None:
    server = server_factory()
    await _fill(server.url, MANY)
    small = await _small_queues(server.url)
    backend = CorralBackend()
    seen: list[tuple[frozenset[str], int]] = []
    """Each snapshot's queues, and how many whole discoveries had ended when it was made."""

    def note(snapshot: DashboardSnapshot) -> bool:
        seen.append((frozenset(q.name for q in snapshot.queues), monitor.discoveries))
        return monitor.discoveries > 0 and len(snapshot.queues) == SMALL_QUEUES + 1

    async with CommandAudit(server.url, ignore_clients=frozenset({PRODUCER})) as audit:
        # every snapshot published is seen (no coalescing to 10 a second): each SCAN step shows
        monitor = QueueMonitor(backend, server.url, poll_interval=0.2, block_ms=200, max_rate=1e3)
        last = await _watch(monitor, note)
        await _read_pages(backend, server.url, MANY)

    big = last.queue(BIG)
    assert big is not None and big.counts.wait == MANY
    first_big = next(done for names, done in seen if BIG in names)
    assert first_big == 0, "the big queue waited for the SCAN to end"
    partial = [names & small for names, done in seen if done == 0 and len(names & small) > 0]
    assert partial and len(partial[0]) < SMALL_QUEUES, "queues the SCAN found waited for its end"
    assert seen[-1][0] == small | {BIG}

    audit.assert_no_writes()
    audit.assert_bounded_reads()
    assert audit.commandstats.get("keys", 0) == 0
    calls = audit.calls()
    assert calls["randomkey"] == SAMPLE_KEYS
    assert calls["scan"] >= 10  # a SCAN in steps, not one call over the whole keyspace


async def _traced_peak(url: str, jobs: int) -> int:
    """Peak bytes allocated (``tracemalloc``) while a monitor discovers and counts the queues
    and the queue screen's pages of the big queue are read."""
    backend = CorralBackend()
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        monitor = QueueMonitor(backend, url, poll_interval=0.2, block_ms=200)

        def counted(snapshot: DashboardSnapshot) -> bool:
            big = snapshot.queue(BIG)
            return monitor.discoveries > 0 and big is not None and big.counts.wait == jobs

        await _watch(monitor, counted)
        await _read_pages(backend, url, jobs)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


async def test_monitor_memory_does_not_grow_with_the_queue(server_factory: ServerFactory) -> None:
    server = server_factory()
    await _fill(server.url, FEW)
    await _traced_peak(server.url, FEW)  # warm-up: first-use allocations (imports, caches)
    few = await _traced_peak(server.url, FEW)
    await _fill(server.url, MANY)
    many = await _traced_peak(server.url, MANY)
    print(f"D4: traced peak {few:,} bytes at {FEW:,} jobs, {many:,} at {MANY:,}")
    assert many - few < MEMORY_GROWTH_LIMIT, (few, many)
