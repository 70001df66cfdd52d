"""A frozen worker that wakes up (W4), and retry-all / clean of 100,000 failed jobs in
bounded batches while another queue keeps working (X7)."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from support.invariants import assert_invariants
from support.ledger import read_ledger
from support.server import FaultServer
from support.streams import stream_events
from support.workers import WorkerProcess, running_worker, wait_until

from engine import Job, Queue
from engine.keys import QueueKeys

LEDGER_JOB = "support.jobs:ledger_job"


async def _completed(queue: Queue, n: int) -> bool:
    return (await queue.get_totals())[0] >= n


STAMPED_JOB = "reliability.stamped_jobs:stamped_job"  # returns {"pid": the worker's pid}

# W4: the frozen worker holds W4_HELD jobs (the plan's scenario freezes a worker mid-job; a few
# jobs check that each lost one is refused on its own). L and S are WorkerProcess's defaults.
W4_HELD = 3
W4_FREEZE_AT_LEAST = 1.0 + 2 * 0.5 + 1.0  # L + 2S + epsilon


@pytest.mark.timeout(90)
async def test_w4_zombie_worker_cannot_complete_what_it_lost(
    redis_url: str, queue_name: str, tmp_path: Path, procs: list[WorkerProcess]
) -> None:
    """W4: worker A is frozen (SIGSTOP) mid-job for at least L + 2S + epsilon, until B has
    re-run and completed its jobs; then A wakes (SIGCONT). A's late completions are rejected,
    one warning each, and its return values are nowhere: each job has exactly one completion
    record (one ``completed`` event), with B's result in the job and in the event. A goes on
    taking new work."""
    ledger = tmp_path / "ledger.jsonl"
    async with Queue(queue_name, redis_url) as queue:
        jobs = await queue.add_bulk(
            [("j", {"first_sleep": 1.5, "sleep": 0.2}) for _ in range(W4_HELD)]
        )
        ids = {j.id for j in jobs}
        a = WorkerProcess(STAMPED_JOB, queue_name, redis_url, ledger=ledger, concurrency=W4_HELD)
        procs.append(a)

        async def a_holds_all() -> bool:
            return len(await queue.get_job_ids("active", 0, -1)) == W4_HELD

        await wait_until(a_holds_all, within=20)
        a.signal(signal.SIGSTOP)
        frozen_at = time.monotonic()
        b = WorkerProcess(STAMPED_JOB, queue_name, redis_url, ledger=ledger, concurrency=W4_HELD)
        procs.append(b)
        await wait_until(lambda: _completed(queue, W4_HELD), within=30)
        await asyncio.sleep(max(0.0, frozen_at + W4_FREEZE_AT_LEAST - time.monotonic()))
        a.signal(signal.SIGCONT)

        async def a_finished_its_runs() -> bool:
            finishes = [x for x in read_ledger(ledger) if x["kind"] == "finish"]
            return sum(1 for x in finishes if x["pid"] == a.proc.pid) == W4_HELD

        await wait_until(a_finished_its_runs, within=20)
        await asyncio.sleep(0.5)  # A's completions are sent and refused
        b.signal(signal.SIGTERM)
        assert await asyncio.to_thread(b.wait, 30) == 0
        more = await queue.add("after", {})
        await wait_until(lambda: _completed(queue, W4_HELD + 1), within=20)
        a.signal(signal.SIGTERM)
        assert await asyncio.to_thread(a.wait, 30) == 0
        log = a.output()
        warnings = [line for line in log.splitlines() if "result of job" in line]
        assert sorted(w.split("result of job ")[1].split()[0] for w in warnings) == sorted(ids)
        assert "lock is gone" in warnings[0] and "ERROR" not in log and "Traceback" not in log
        assert await queue.get_totals() == (W4_HELD + 1, 0)
        starts: dict[str, int] = {}
        for line in read_ledger(ledger):
            if line["kind"] == "start":
                starts[str(line["job_id"])] = starts.get(str(line["job_id"]), 0) + 1
        assert starts == {**dict.fromkeys(ids, 2), more.id: 1}
        # one completion record per job, B's: in the job hash and in the one completed event
        for job_id in ids:
            job = await queue.get_job(job_id)
            assert job is not None and job.returnvalue == {"pid": b.proc.pid}, job
        done = await queue.get_job(more.id)
        assert done is not None and done.returnvalue == {"pid": a.proc.pid}  # A works on
        completed = await stream_events(queue.client, queue_name, "completed")
        assert sorted(e["job_id"] for e in completed) == sorted([*ids, more.id])
        for event in completed:
            pid = b.proc.pid if event["job_id"] in ids else a.proc.pid
            assert json.loads(event["returnvalue"]) == {"pid": pid}, event
        assert len(await stream_events(queue.client, queue_name, "stalled")) == W4_HELD
        await assert_invariants(queue.client, queue_name, completed=W4_HELD + 1)


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


_SEED_FAILED = """
local prefix, first, n, now = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
for i = first, first + n - 1 do
  redis.call('HSET', prefix .. i, 'name', 'j', 'data', '{}', 'opts', '{"attempts":1}',
    'timestamp', now, 'attempts', 1, 'attempts_made', 1, 'attempts_started', 1,
    'finished_on', now - 1000, 'failed_reason', 'boom')
  redis.call('ZADD', KEYS[1], now - 1000, i)
end
redis.call('HINCRBY', KEYS[2], 'failed', n)
return n
"""


async def _seed_failed(client: aioredis.Redis, queue: str, n: int) -> None:
    """``n`` failed jobs written straight into the layout (as ``fail_job`` leaves them)."""
    keys = QueueKeys(queue)
    await client.hset(keys.meta, mapping={"version": "1", "created": 0, "max_events": 1000})
    seconds, _ = await client.time()
    for first in range(1, n + 1, 10_000):
        await client.eval(  # type: ignore[misc]
            _SEED_FAILED,
            2,
            keys.failed,
            keys.counters,
            keys.job_prefix,
            first,
            min(10_000, n - first + 1),
            int(seconds) * 1000,
        )


@pytest.mark.timeout(120)
async def test_x7_retry_all_and_clean_100k_failed_jobs_in_bounded_batches(
    fresh_server: FaultServer,
) -> None:
    """X7: retry-all and clean of 100,000 failed jobs run as many short scripts of at most 100
    jobs, none over 50 ms in the slow log, a worker on another queue keeps completing jobs
    meanwhile, and the totals reconcile exactly."""
    url = fresh_server.url
    client = aioredis.Redis.from_url(url, decode_responses=True)
    done: list[float] = []

    async def process(job: Job) -> Any:
        done.append(time.monotonic())

    try:
        await _seed_failed(client, "retried", 100_000)
        await _seed_failed(client, "cleaned", 100_000)
        # scripts over 1 ms are logged (commands run inside scripts are logged too, so logging
        # everything would overflow the log)
        await client.config_set("slowlog-log-slower-than", 1_000)
        await client.config_set("slowlog-max-len", 100_000)
        await client.slowlog_reset()
        await client.config_resetstat()
        async with (
            Queue("retried", url) as retried,
            Queue("cleaned", url) as cleaned,
            Queue("other", url) as other,
            running_worker("other", process, url, concurrency=5),
        ):
            await other.add_bulk([("o", {}) for _ in range(5000)])
            started = time.monotonic()
            assert await retried.retry_jobs("failed") == 100_000
            removed = await cleaned.clean(0, 100_000, "failed")
            finished = time.monotonic()
            assert len(removed) == 100_000
            assert len([t for t in done if started <= t <= finished]) > 0  # others kept going
        stats: Any = await client.info("commandstats")
        assert stats["cmdstat_evalsha"]["calls"] >= 2 * 100_000 // 100  # many short batches
        logged = [
            (int(e["duration"]), _text(e["command"]).split())
            for e in await client.slowlog_get(100_000)
        ]
        scripts = [
            (micros, args)
            for micros, args in logged
            if args[0] == "EVALSHA" and any(q in args[3] for q in ("{retried}", "{cleaned}"))
        ]
        assert scripts and all(int(args[-1]) <= 100 for _, args in scripts)
        durations = sorted(micros for micros, _ in scripts)
        print(f"X7: {len(durations)} scripts over 1 ms; slowest (us): {durations[-5:]}")
        assert durations[-1] < 50_000, durations[-10:]  # the plan's bound, for every script
        assert await client.hget(QueueKeys("retried").counters, "failed") == "100000"
        await assert_invariants(client, "retried", wait=100_000, failed=0)
        await assert_invariants(client, "cleaned", failed=0)
    finally:
        await client.aclose()
