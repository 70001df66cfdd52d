"""R9 without coordination: the primary dies and its replica is promoted (as Sentinel does after
a crash), so what the primary acknowledged last and had not yet sent to the replica is gone.

Replication runs through a proxy that goes silent for the last second before the primary is
SIGKILLed: every write of that second is acknowledged by the primary and never reaches the
replica. The test checks that the consequences are the ones Corral documents (durability is
Redis's) and that nothing beyond them happens.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from support.failover import (
    RESUME_WITHIN,
    Producer,
    caught_up,
    client_of,
    completed_ids,
    replicate,
)
from support.invariants import assert_invariants
from support.ledger import check_ledger, read_ledger
from support.proxy import FaultProxy
from support.server import ServerFactory
from support.streams import stream_events
from support.workers import WorkerProcess, wait_until

from engine import Queue, QueueKeys

LEDGER_JOB = "support.jobs:ledger_job"
SILENT_S = 1.0
"""How long the replication link is silent before the primary dies."""


async def _held_by(client: aioredis.Redis, queue: str, ids: set[str]) -> set[str]:
    """Those of ``ids`` whose job hash the server holds."""
    keys, ordered = QueueKeys(queue), sorted(ids)
    async with client.pipeline(transaction=False) as pipe:
        for job_id in ordered:
            pipe.exists(keys.job(job_id))
        found: list[Any] = await pipe.execute()
    return {job_id for job_id, there in zip(ordered, found, strict=True) if there}


def _ledger_without(ledger: Path, ids: set[str], before: float) -> Path:
    """A copy of ``ledger`` without the runs of ``ids`` that started before ``before`` (wall
    s): each such start line and the finish line of the same job after it, whenever that was
    written."""
    kept, running = [], set()
    for line in read_ledger(ledger):
        job_id = str(line["job_id"])
        if line["kind"] == "start" and job_id in ids and float(str(line["t"])) < before:
            running.add(job_id)
        elif line["kind"] == "finish" and job_id in running:
            running.discard(job_id)
        else:
            kept.append(json.dumps(line))
    out = ledger.with_name("ledger-on-b.jsonl")
    out.write_text("".join(f"{line}\n" for line in kept))
    return out


def _touched_between(ledger: Path, start: float, end: float) -> set[str]:
    """Jobs the ledger shows starting or finishing between ``start`` and ``end`` (wall s)."""
    return {
        str(line["job_id"]) for line in read_ledger(ledger) if start <= float(str(line["t"])) <= end
    }


@pytest.mark.timeout(120)
async def test_r9_uncoordinated_failover_loses_only_what_the_replica_never_got(
    server_factory: ServerFactory, queue_name: str, tmp_path: Path, procs: list[WorkerProcess]
) -> None:
    """A ``corral worker`` and a producer reach A through one address; B replicates A through a
    link that goes silent for the last second before A is SIGKILLed; B is promoted and the
    address moves to it. Exactly the adds A acknowledged in that second are gone. Every other
    job completes once on B; a job runs a second time only if the worker took or finished it
    during that second (B never heard of it), and a ``stalled`` event on B names only such
    jobs. A job added after the failover completes within 5 s + slack, the worker does not
    take B for a reset dataset (B holds the queue's data) and logs no traceback, and the
    invariants hold on B."""
    a, b = server_factory(), server_factory()
    admin_a, admin_b = client_of(a), client_of(b)
    ledger, log_file = tmp_path / "ledger.jsonl", tmp_path / "worker.log"
    try:
        with (
            FaultProxy(a.port) as link,
            FaultProxy(a.port) as worker_end,
            FaultProxy(a.port) as producer_end,
        ):
            await replicate(admin_b, admin_a, link.port)  # B replicates A through ``link``
            worker = WorkerProcess(
                LEDGER_JOB, queue_name, worker_end.url, ledger=ledger, log_file=log_file,
                concurrency=8, lock_duration=2000, stalled_interval=500,
            )  # fmt: skip
            procs.append(worker)
            async with Queue(queue_name, producer_end.url) as queue:
                producer = Producer(queue)
                producer.start()

                async def warm() -> bool:
                    return len(await completed_ids(admin_a, queue_name)) >= 20

                await wait_until(warm, within=30)
                await producer.hold()
                replicated = set(producer.added)
                await wait_until(lambda: caught_up(admin_a, admin_b), within=10)
                silent_from = time.time()
                link.blackhole()  # from here on, A's writes never reach B
                producer.resume()
                await asyncio.sleep(SILENT_S)
                await producer.hold()
                unsent = set(producer.added) - replicated
                a.kill()  # the crash: no pause, no catching up
                await admin_b.replicaof("NO", "ONE")
                lost = unsent - await _held_by(admin_b, queue_name, unsent)
                before_failover = len(producer.added)
                for proxy in (worker_end, producer_end):
                    proxy.retarget(b.port)
                switched, switched_at = time.monotonic(), time.time()
                producer.resume()
                probe = await queue.add("probe", {})

                async def probe_done() -> bool:
                    score = await admin_b.zscore(QueueKeys(queue_name).completed, probe.id)
                    return score is not None

                await wait_until(probe_done, within=RESUME_WITHIN + 5, interval=0.02)
                resumed = time.monotonic() - switched
                await asyncio.sleep(1.0)  # more adds, on B
                await producer.stop()
                on_b = {*(set(producer.added[:before_failover]) - lost)}
                since = {*producer.added[before_failover:], probe.id}  # added to B
                added = on_b | since

                async def all_done() -> bool:
                    return len(await completed_ids(admin_b, queue_name)) >= len(added)

                await wait_until(all_done, within=30)
                worker.signal(signal.SIGTERM)
                assert await asyncio.to_thread(worker.wait, 30) == 0
                log = worker.output() + log_file.read_text()
                # B's id counter is A's from before the silence: the lost jobs' ids are given
                # out again. Their runs that began on A are set apart from the ledger.
                reused = since & lost
                on_a_only = _ledger_without(ledger, lost, switched_at)
                touched = _touched_between(on_a_only, silent_from, switched_at)
                completed = await completed_ids(admin_b, queue_name)
                stalled = {e["job_id"] for e in await stream_events(admin_b, queue_name, "stalled")}
                check = check_ledger(on_a_only, added, completed, recovered=touched)
                print(
                    f"\nR9 uncoordinated: {len(unsent)} adds acknowledged while the link was "
                    f"silent, {len(lost)} lost; {len(touched)} jobs taken or finished then, "
                    f"{len(check.recovered)} ran again on B ({len(stalled)} stalled events); "
                    f"a job added after the failover completed {resumed:.2f} s after it; "
                    f"{len(reused)} ids of lost jobs given to new ones; "
                    f"producer errors: {[type(e).__name__ for e in producer.errors]}"
                )
                # exactly the adds A acknowledged while B heard nothing are gone, and B gives
                # their ids to the next jobs added (as Redis's INCR goes back with it)
                assert unsent and lost == unsent, (sorted(lost), sorted(unsent))
                assert reused, (sorted(since), sorted(lost))
                assert check.unexpected == set(), check.unexpected
                # every other job completed once on B; a second run, or a stalled event, only
                # for a job taken or finished during the silent second
                assert check.lost == set() and check.duplicated == set(), check
                assert check.recovered <= touched and stalled <= touched, (stalled, touched)
                assert resumed <= RESUME_WITHIN, resumed
                assert "dataset was reset" not in log, log
                assert "Traceback" not in log, log
                await assert_invariants(admin_b, queue_name, completed=len(added))
    finally:
        await admin_a.aclose()
        await admin_b.aclose()
