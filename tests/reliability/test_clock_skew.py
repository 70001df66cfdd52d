"""Client clocks do not matter (T1, T2): producer and worker processes run with their wall
clock skewed or stepped by the ``libfaketime.so.1`` of the ``libfaketime`` wheel, and delays,
rate-limit windows, locks and the live-worker count follow the server's clock alone."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from support.clock import faketime_env, faketime_library
from support.invariants import assert_invariants
from support.ledger import check_ledger, read_ledger
from support.server import FaultServer
from support.streams import stream_events
from support.workers import TESTS_DIR, WorkerProcess, wait_until

from engine import Queue
from engine.health import read_health
from engine.keys import QueueKeys

pytestmark = pytest.mark.timeout(120)

LEDGER_JOB = "support.jobs:ledger_job"
SKEW_S = 300
SLACK_MS = 1500  # scheduling slack on a loaded two-core machine

LIBRARY = faketime_library()
needs_faketime = pytest.mark.skipif(
    LIBRARY is None,
    reason="libfaketime.so.1 not found: install the test extra (the libfaketime wheel ships it)",
)


async def _server_ms(client: aioredis.Redis) -> int:
    seconds, micros = await client.time()
    return int(seconds) * 1000 + int(micros) // 1000


def _produce(
    url: str, queue: str, jobs: list[list[object]], env: dict[str, str]
) -> dict[str, object]:
    """Add ``jobs`` from a child process with ``env`` (its skewed clock); its JSON reply."""
    done = subprocess.run(
        [sys.executable, "-m", "support.produce", url, queue, json.dumps(jobs)],
        cwd=TESTS_DIR,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    reply: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return reply


async def _live_workers(client: aioredis.Redis, queue: str, n: int) -> bool:
    return (await read_health(client, QueueKeys(queue), 60_000)).workers == n


async def _completed(queue: Queue, n: int) -> bool:
    return (await queue.get_totals())[0] >= n


@needs_faketime
async def test_t1_producer_ahead_and_workers_behind(
    fresh_server: FaultServer, tmp_path: Path, procs: list[WorkerProcess]
) -> None:
    """T1: the producer's clock is 300 s ahead, the workers' 300 s behind. A job delayed 2 s
    starts 2 s (+ slack) after it was added, on the server clock; jobs that run longer than the
    lock are not taken for stalled; a limit of 5 jobs per 1 s window holds; the workers count
    as live (their heartbeats are scored on the server clock)."""
    assert LIBRARY is not None
    url, ledger, rated_ledger = fresh_server.url, tmp_path / "skew.jsonl", tmp_path / "rl.jsonl"
    behind = faketime_env(LIBRARY, offset=f"-{SKEW_S}s")
    ahead = faketime_env(LIBRARY, offset=f"+{SKEW_S}s")
    for _ in range(2):
        procs.append(
            WorkerProcess(LEDGER_JOB, "skew", url, ledger=ledger, concurrency=3, env=behind)
        )
        procs.append(
            WorkerProcess(
                LEDGER_JOB, "limited", url, ledger=rated_ledger, concurrency=5, env=behind,
                extra_args=["--limit-max", "5", "--limit-duration", "1000"],
            )
        )  # fmt: skip
    async with Queue("skew", url) as queue, Queue("limited", url) as limited:
        client = queue.client
        await wait_until(lambda: _live_workers(client, "skew", 2), within=30)
        await wait_until(lambda: _live_workers(client, "limited", 2), within=30)
        before = await _server_ms(client)
        jobs: list[list[object]] = [["delayed", {}, {"delay": 2000}]]
        jobs += [["long", {"sleep": 1.6}, {}] for _ in range(4)]
        produced = await asyncio.to_thread(_produce, url, "skew", jobs, ahead)
        after = await _server_ms(client)
        assert abs(int(str(produced["clock_ms"])) - after - SKEW_S * 1000) < 5_000  # skewed
        ids = [str(i) for i in produced["ids"]]  # type: ignore[attr-defined]
        rated = await asyncio.to_thread(
            _produce, url, "limited", [["r", {}, {}] for _ in range(20)], ahead
        )
        rated_ids = {str(i) for i in rated["ids"]}  # type: ignore[attr-defined]
        await wait_until(lambda: _completed(queue, 5), within=40)
        await wait_until(lambda: _completed(limited, 20), within=40)

        delayed = await queue.get_job(ids[0])
        assert delayed is not None and delayed.processed_on is not None
        assert before <= delayed.timestamp <= after  # stamped by the server, not the producer
        assert 2000 <= delayed.processed_on - delayed.timestamp <= 2000 + SLACK_MS
        assert await stream_events(client, "skew", "stalled") == []
        lines = read_ledger(ledger)
        server_now = await _server_ms(client)
        assert all(
            abs(float(str(x["t"])) * 1000 + SKEW_S * 1000 - server_now) < 60_000 for x in lines
        )
        for path, added, q in ((ledger, set(ids), queue), (rated_ledger, rated_ids, limited)):
            check = check_ledger(path, added, set(await q.get_job_ids("completed", 0, -1)))
            assert not check.lost and not check.duplicated and not check.unexpected
            assert check.starts == dict.fromkeys(added, 1)

        starts = []
        for job_id in rated_ids:
            job = await limited.get_job(job_id)
            assert job is not None and job.processed_on is not None
            starts.append(job.processed_on)
        starts.sort()
        for k in range(1, 4):  # fixed windows: the (5k+1)th start is k windows after the first
            assert starts[5 * k] - starts[0] >= 1000 * k - 5, starts
        assert await _live_workers(client, "skew", 2)  # still live, on the server's clock
        await assert_invariants(client, "skew", completed=5)
        await assert_invariants(client, "limited", completed=20)


@needs_faketime
@pytest.mark.parametrize("step", ["+3600s", "-3600s"], ids=["forward", "back"])
async def test_t2_worker_clock_steps_during_a_running_job(
    fresh_server: FaultServer, tmp_path: Path, procs: list[WorkerProcess], step: str
) -> None:
    """T2: the worker's wall clock steps by an hour while it runs a job three times longer
    than its lock (the clock file is re-read on every clock call, so this is a true step of a
    running process). The lock's TTL is the server's, so the job does not stall and runs once;
    the worker stays live and takes the next job."""
    assert LIBRARY is not None
    url, ledger = fresh_server.url, tmp_path / "ledger.jsonl"
    spec = tmp_path / "faketime"
    spec.write_text("+0\n")
    worker = WorkerProcess(
        LEDGER_JOB, "step", url, ledger=ledger, env=faketime_env(LIBRARY, file=spec)
    )
    procs.append(worker)
    async with Queue("step", url) as queue:
        client = queue.client
        await wait_until(lambda: _live_workers(client, "step", 1), within=30)
        job = await queue.add("long", {"sleep": 3.0})

        async def started() -> bool:
            return any(x["kind"] == "start" for x in read_ledger(ledger))

        await wait_until(started, within=20)
        before = float(str(read_ledger(ledger)[0]["t"]))
        spec.write_text(step + "\n")
        await wait_until(lambda: _completed(queue, 1), within=30)
        finish = [x for x in read_ledger(ledger) if x["kind"] == "finish"]
        jumped = float(str(finish[0]["t"])) - before
        assert abs(jumped - int(step[:-1])) < 30  # the step really happened in the worker
        assert await _live_workers(client, "step", 1)
        nxt = await queue.add("next", {})
        await wait_until(lambda: _completed(queue, 2), within=20)
        assert await stream_events(client, "step", "stalled") == []
        check = check_ledger(ledger, {job.id, nxt.id}, {job.id, nxt.id})
        assert check.starts == {job.id: 1, nxt.id: 1}
        assert not check.lost and not check.duplicated and not check.unexpected
        worker.signal(15)
        assert await asyncio.to_thread(worker.wait, 30) == 0
        log = worker.output()
        assert "lost the lock" not in log and "Traceback" not in log, log
        await assert_invariants(client, "step", completed=2)
