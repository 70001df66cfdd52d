"""Failover (R9, and R7's second half): the server a worker and a producer talk to is demoted
to a replica (``READONLY`` to writes, ``UNBLOCKED`` to a blocked ``BZPOPMIN``) while its
replica, which never loaded Corral's scripts, is promoted and the configured address (a TCP
proxy) moves to it; and a server demoted for a while then promoted back, the address staying.

Each failover is coordinated, as the ``FAILOVER`` command or an operator does it: writes to the
old primary are paused (``CLIENT PAUSE WRITE``) until the replica has caught up, then the roles
swap and the pause ends. The paused calls are answered by the demoted server.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import signal
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ReadOnlyError, ResponseError
from support.failover import (
    HOST,
    RESUME_WITHIN,
    Producer,
    caught_up,
    client_of,
    completed_ids,
    replicate,
)
from support.invariants import assert_invariants
from support.ledger import check_ledger, read_ledger
from support.outage import cpu_seconds, gaps
from support.proxy import FaultProxy
from support.server import ServerFactory
from support.streams import stream_events
from support.workers import WorkerProcess, wait_until

from engine import Queue, QueueKeys, Worker, commands
from engine.connection import make_client
from engine.multiplex import MultiplexedConnection
from engine.scripts import SCRIPT_NAMES, ScriptRegistry, script_source

LEDGER_JOB = "support.jobs:ledger_job"
OUTAGE = 8.0  # seconds a demoted server stays a replica before it is promoted back
USED_SCRIPTS = ("add_job", "move_to_active", "complete_jobs")
"""Scripts the first test's run calls before the failover (and after it, lock renewals too)."""


def _sha(name: str) -> str:
    return hashlib.sha1(script_source(name).encode()).hexdigest()


async def _fail_over(
    old: aioredis.Redis,
    new: aioredis.Redis,
    new_port: int,
    proxies: Sequence[FaultProxy] = (),
    while_paused: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """Pause writes on ``old``, wait until ``new`` has them all, promote ``new``, move the
    ``proxies`` to it, make ``old`` its replica, end the pause."""
    await old.execute_command("CLIENT", "PAUSE", 20_000, "WRITE")  # type: ignore[no-untyped-call]
    try:
        if while_paused is not None:
            await while_paused()
        await wait_until(lambda: caught_up(old, new), within=10)
        await new.replicaof("NO", "ONE")
        for proxy in proxies:
            proxy.retarget(new_port)
        await old.replicaof(HOST, new_port)
    finally:
        await old.execute_command("CLIENT", "UNPAUSE")  # type: ignore[no-untyped-call]


async def _errors(client: aioredis.Redis) -> dict[str, int]:
    """The server's error replies so far, by prefix (``INFO errorstats``)."""
    stats: dict[str, Any] = await client.info("errorstats")
    out = {}
    for key, value in stats.items():
        count = value.get("count", 0) if isinstance(value, dict) else value
        out[key.removeprefix("errorstat_")] = int(count)
    return out


def _lines_since(log_file: Path, offset: int) -> list[str]:
    return log_file.read_bytes()[offset:].decode().splitlines()


@pytest.mark.timeout(120)
async def test_r9_failover_moves_the_address_and_the_worker_follows(
    server_factory: ServerFactory, queue_name: str, tmp_path: Path, procs: list[WorkerProcess]
) -> None:
    """R9 and R7: a ``corral worker`` (4 three-second jobs in flight, its fetch blocked in
    ``BZPOPMIN``) and a producer (adds in flight) behind one address, A primary, B its replica
    without Corral's scripts. A fails over to B and the address moves: the blocked fetch gets
    ``UNBLOCKED``, the renewals, completions and adds ``READONLY``; each reconnects to the
    address and goes on, loading the scripts B lacks, with no error to the caller and no log
    line. A job added after the failover completes within 5 s + slack; nothing added is lost,
    no job runs twice, no ``stalled`` event, and the invariants hold on B."""
    a, b = server_factory(), server_factory()
    admin_a, admin_b = client_of(a), client_of(b)
    ledger, log_file = tmp_path / "ledger.jsonl", tmp_path / "worker.log"
    try:
        await replicate(admin_b, admin_a, a.port)
        with FaultProxy(a.port) as worker_end, FaultProxy(a.port) as producer_end:
            worker = WorkerProcess(
                LEDGER_JOB,
                queue_name,
                worker_end.url,
                ledger=ledger,
                log_file=log_file,
                concurrency=8,
                lock_duration=5000,
                stalled_interval=1000,
            )
            procs.append(worker)
            async with Queue(queue_name, producer_end.url) as queue:
                producer = Producer(queue)
                producer.start()

                async def warm() -> bool:
                    return len(await completed_ids(admin_a, queue_name)) >= 20

                await wait_until(warm, within=30)
                await producer.hold()
                long_jobs = [(await queue.add("long", {"sleep": 3.0})).id for _ in range(4)]

                async def holding_and_blocked() -> bool:
                    active = await admin_a.zcard(QueueKeys(queue_name).active)
                    clients: dict[str, Any] = await admin_a.info("clients")
                    return active == 4 and int(clients["blocked_clients"]) >= 1

                await wait_until(holding_and_blocked, within=10)
                # R7: A runs the scripts, B never loaded one (replicas do not get them)
                shas = [_sha(name) for name in SCRIPT_NAMES]
                assert all(await admin_a.script_exists(*map(_sha, USED_SCRIPTS)))
                assert not any(await admin_b.script_exists(*shas))
                errors_before = await _errors(admin_a)
                accepted_before = len(worker_end.accept_times)
                logged_before = log_file.stat().st_size

                async def adds_in_flight() -> None:
                    producer.resume()  # its add waits in A's pause, then gets READONLY
                    await asyncio.sleep(0.3)

                await _fail_over(
                    admin_a, admin_b, b.port, [worker_end, producer_end], adds_in_flight
                )
                switched = time.monotonic()
                probe = await queue.add("probe", {})

                async def probe_done() -> bool:
                    return (
                        await admin_b.zscore(QueueKeys(queue_name).completed, probe.id) is not None
                    )

                await wait_until(probe_done, within=RESUME_WITHIN + 5, interval=0.02)
                resumed = time.monotonic() - switched
                await asyncio.sleep(3.0)  # more adds, and the long jobs finish, on B
                await producer.stop()
                added = {*producer.added, *long_jobs, probe.id}

                async def all_done() -> bool:
                    return len(await completed_ids(admin_b, queue_name)) >= len(added)

                await wait_until(all_done, within=30)
                errors_after = await _errors(admin_a)
                reconnects = len(worker_end.accept_times) - accepted_before
                worker.signal(signal.SIGTERM)
                assert await asyncio.to_thread(worker.wait, 30) == 0
                lines = _lines_since(log_file, logged_before)
                log = worker.output()
                answered = {
                    error: errors_after.get(error, 0) - errors_before.get(error, 0)
                    for error in ("READONLY", "UNBLOCKED")
                }
                print(
                    f"\nR9 failover: a job added after it completed {resumed:.2f} s after; "
                    f"{len(producer.added)} adds, {len(producer.errors)} failed; the worker "
                    f"made {reconnects} connection(s) after the failover and logged "
                    f"{len(lines)} line(s): {lines}; A answered {answered}"
                )
                # the failover really answered the old connections with both errors
                assert answered["READONLY"] > 0 and answered["UNBLOCKED"] > 0, answered
                # no error reached the producer; processing resumed in time
                assert producer.errors == [], producer.errors
                assert resumed <= RESUME_WITHIN
                # no tight loop: each of the worker's connections reconnected a few times
                assert reconnects <= 30, reconnects
                assert "Traceback" not in log, log
                assert not [line for line in lines if "WARNING" in line or "ERROR" in line]
                assert "script" not in log.lower(), log
                # R7: the scripts were loaded on B as they were first called there
                after = (*USED_SCRIPTS, "extend_locks")
                assert all(await admin_b.script_exists(*map(_sha, after)))
                # the ledger: nothing lost, nothing run twice, nothing unexpected
                completed = await completed_ids(admin_b, queue_name)
                check = check_ledger(ledger, added, completed)
                assert not check.lost and not check.duplicated and not check.unexpected
                assert all(check.finishes[job_id] == 1 for job_id in added)
                assert await stream_events(admin_b, queue_name, "stalled") == []
                await assert_invariants(admin_b, queue_name, completed=len(added))
    finally:
        await admin_a.aclose()
        await admin_b.aclose()


@pytest.mark.timeout(120)
async def test_r9_demoted_server_promoted_back_worker_waits_quietly(
    server_factory: ServerFactory, queue_name: str, tmp_path: Path, procs: list[WorkerProcess]
) -> None:
    """R9 without a moving address: the worker's server A is demoted (B promoted) for 8 s, then
    promoted back. The worker stays up, says once that its server is a read-only replica,
    retries less and less often (its reconnects thin out), uses under 5 % of a core, and once A
    is primary again runs the jobs added to B meanwhile (replicated to A), within its backoff."""
    a, b = server_factory(), server_factory()
    admin_a, admin_b = client_of(a), client_of(b)
    ledger, log_file = tmp_path / "ledger.jsonl", tmp_path / "worker.log"
    try:
        await replicate(admin_b, admin_a, a.port)
        with FaultProxy(a.port) as end:
            worker = WorkerProcess(
                LEDGER_JOB, queue_name, end.url, ledger=ledger, log_file=log_file
            )
            procs.append(worker)
            pid = worker.proc.pid
            async with Queue(queue_name, a.url) as on_a:
                before = [(await on_a.add("before", {})).id for _ in range(5)]

            async def done_on_a(ids: list[str]) -> bool:
                return set(ids) <= await completed_ids(admin_a, queue_name)

            await wait_until(lambda: done_on_a(before), within=30)

            async def idle() -> bool:
                clients: dict[str, Any] = await admin_a.info("clients")
                return int(clients["blocked_clients"]) >= 1

            await wait_until(idle, within=10)
            logged_before = log_file.stat().st_size
            accepted_before = len(end.accept_times)
            await _fail_over(admin_a, admin_b, b.port)  # the address stays on A
            demoted = time.monotonic()
            cpu_before = cpu_seconds(pid)
            async with Queue(queue_name, b.url) as on_b:
                during = [(await on_b.add("during", {})).id for _ in range(5)]

            async def replicated() -> bool:
                keys = QueueKeys(queue_name)
                return all([await admin_a.exists(keys.job(job_id)) for job_id in during])

            await wait_until(replicated, within=10)
            await asyncio.sleep(OUTAGE - (time.monotonic() - demoted))
            outage = time.monotonic() - demoted
            cpu_share = (cpu_seconds(pid) - cpu_before) / outage
            tries = [t - demoted for t in end.accept_times[accepted_before:]]
            lines = _lines_since(log_file, logged_before)
            assert worker.proc.poll() is None  # still running
            await _fail_over(admin_b, admin_a, a.port)  # A is primary again
            promoted = time.monotonic()
            await wait_until(lambda: done_on_a(during), within=30)
            resumed = time.monotonic() - promoted
            worker.signal(signal.SIGTERM)
            assert await asyncio.to_thread(worker.wait, 30) == 0
            log = worker.output()
            early = sum(1 for t in tries if t < outage / 2)
            print(
                f"\nR9 demoted for {outage:.1f} s: {len(tries)} connection(s) ({early} in "
                f"the first half), longest gap {max(gaps([0.0, *tries, outage])):.2f} s; "
                f"CPU {cpu_share:.2%} of a core; {len(lines)} log line(s): {lines}; the "
                f"jobs added meanwhile ran {resumed:.2f} s after the promotion"
            )
            assert "Traceback" not in log, log
            # one line per loop that failed, the fetch loop's naming the replica
            replica_lines = [line for line in lines if "read-only replica" in line]
            assert sum("lost Redis" in line for line in replica_lines) == 1, lines
            assert all(
                "lost Redis" in line or "lock renewal failed" in line for line in replica_lines
            ), lines
            assert len(replica_lines) <= 2, lines
            assert [line for line in lines if "WARNING" in line or "ERROR" in line] == (
                replica_lines
            )
            # backoff: reconnects thin out (half as many in the second half), no tight
            # loop, little CPU
            assert len(tries) - early <= early / 2, [round(t, 2) for t in tries]
            assert len(tries) <= 80, [round(t, 2) for t in tries]
            assert cpu_share < 0.05
            # resumed within the backoff it had reached (capped at 20 s), plus slack
            assert resumed <= min(outage, 20.0) + 1.0
            check = check_ledger(
                ledger, {*before, *during}, await completed_ids(admin_a, queue_name)
            )
            assert not check.lost and not check.duplicated and not check.unexpected
            assert len([x for x in read_ledger(ledger) if x["kind"] == "start"]) == 10
            await assert_invariants(admin_a, queue_name, completed=10)
    finally:
        await admin_a.aclose()
        await admin_b.aclose()


async def test_r9_every_call_path_reconnects_after_a_failover(
    server_factory: ServerFactory, queue_name: str
) -> None:
    """Each way the engine talks to the server, used on the old primary first, works on the new
    one right after a failover that moved the address, with no error: a plain command, a script
    (EVALSHA) on the pool, a script and a batch of scripts on the pipelined connection, a
    pipeline with a script, a MULTI/EXEC pipeline, a durable add (pipeline with WAITAOF, whose
    errors redis-py leaves in the replies), and the worker's blocking connection, blocked in
    ``BZPOPMIN`` during the failover."""
    a, b = server_factory(), server_factory()
    admin_a, admin_b = client_of(a), client_of(b)
    for admin in (admin_a, admin_b):
        await admin.config_set("appendonly", "yes")  # durable adds need AOF
    keys = QueueKeys(queue_name)
    pause_keys = [keys.wait, keys.paused, keys.meta, keys.events]
    try:
        await replicate(admin_b, admin_a, a.port)
        with FaultProxy(a.port) as end:
            client, _ = make_client(end.url)
            wire = MultiplexedConnection.for_client(client)
            assert wire is not None
            pooled, piped = ScriptRegistry(client), ScriptRegistry(client, wire)
            worker = Worker(queue_name, _never_called, end.url, block_timeout=10.0)
            queue = Queue(queue_name, end.url)
            blocked: asyncio.Task[Any] | None = None
            try:

                async def use_every_path(tag: str) -> None:
                    await client.set(f"failover-test:{tag}", tag)
                    await commands.pause_queue(pooled, keys)
                    await commands.resume_queue(piped, keys)
                    batch = piped.batch()
                    assert batch is not None
                    for _ in range(3):
                        await piped.call("pause_queue", pause_keys, [], batch)
                    await batch.execute()
                    async with client.pipeline(transaction=False) as pipe:
                        await pooled.call("resume_queue", [*pause_keys, keys.marker], [], pipe)
                        pipe.incr("failover-test:n")
                        await pipe.execute()
                    async with client.pipeline(transaction=True) as pipe:
                        pipe.incr("failover-test:n")
                        pipe.set(f"failover-test:tx-{tag}", tag)
                        await pipe.execute()
                    await queue.add(tag, {}, durable=True)
                    await queue.add(tag, {})

                await use_every_path("on-a")
                await admin_a.delete(keys.marker)  # so that the fetch below blocks

                async def fetch() -> Any:  # as the worker's fetch loop blocks on the marker
                    return await worker._blocking.bzpopmin(keys.marker, 10)

                blocked = asyncio.create_task(fetch())
                await wait_until(lambda: _blocked_on(admin_a), within=5)
                assert not any(await admin_b.script_exists(_sha("pause_queue")))
                errors_before = await _errors(admin_a)
                await _fail_over(admin_a, admin_b, b.port, [end])
                await use_every_path("on-b")
                await admin_b.zadd(keys.marker, {"0": 0})
                popped = await asyncio.wait_for(blocked, 15)  # answered by B
                assert popped is not None and popped[0] == keys.marker, popped
                errors_after = await _errors(admin_a)
                for error in ("READONLY", "UNBLOCKED"):
                    assert errors_after.get(error, 0) > errors_before.get(error, 0), error
                assert await admin_b.get("failover-test:on-b") == "on-b"
                assert await admin_b.get("failover-test:tx-on-b") == "on-b"
                assert await admin_b.get("failover-test:n") == "4"
                assert await admin_b.llen(keys.wait) == 4  # two adds on A, two on B
            finally:
                if blocked is not None:
                    blocked.cancel()
                    with contextlib.suppress(BaseException):
                        await blocked
                await worker.close()
                await queue.close()
                await wire.aclose()
                await client.aclose()
    finally:
        await admin_a.aclose()
        await admin_b.aclose()


async def _blocked_on(client: aioredis.Redis) -> bool:
    clients: dict[str, Any] = await client.info("clients")
    return int(clients["blocked_clients"]) >= 1


async def _never_called(job: Any) -> None:
    raise AssertionError("no job is run here")


async def test_scripts_are_refused_whole_by_a_replica(server_factory: ServerFactory) -> None:
    """Every script is declared ``#!lua`` without ``no-writes``, so a replica refuses it from
    its flags, before it runs (``READONLY``): a call refused after a failover never ran, and
    retrying it on the new primary is safe. The same body declared ``no-writes`` does run on
    the replica (and fails in its own way, with no keys or arguments given)."""
    primary, replica = server_factory(), server_factory()
    admin_p, admin_r = client_of(primary), client_of(replica)
    try:
        await replicate(admin_r, admin_p, primary.port)
        for name in SCRIPT_NAMES:
            source = script_source(name)
            first_line, _, body = source.partition("\n")
            assert first_line.startswith("#!lua") and "no-writes" not in first_line, name
            with pytest.raises(ReadOnlyError):
                await admin_r.eval(source, 0)
            with contextlib.suppress(ResponseError):  # ran: a Lua error, or a refused write
                try:
                    await admin_r.eval(f"#!lua flags=no-writes\n{body}", 0)
                except ReadOnlyError as exc:
                    raise AssertionError(f"{name}: the no-writes body got READONLY") from exc
        assert await admin_r.dbsize() == 0
    finally:
        await admin_p.aclose()
        await admin_r.aclose()
