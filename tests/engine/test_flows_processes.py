"""Flows with real ``corral worker`` processes and concurrent producer processes: a worker
holding children is SIGKILLed (F3), a child that keeps killing its worker fails its parent, and
the same flow added concurrently from many connections is created once (X1 for flows)."""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from support.flows import flow_problems
from support.ledger import read_ledger
from support.streams import stream_events
from support.workers import TESTS_DIR, WorkerProcess, wait_until

from engine import FlowProducer, JobState, Queue

FLOW_JOB = "support.flow_jobs:flow_job"
LEDGER_JOB = "support.jobs:ledger_job"


@pytest.fixture
def other_queue() -> str:
    return "t-" + uuid.uuid4().hex[:12]


@pytest.mark.timeout(120)
async def test_killed_worker_holding_children_parent_completes_once(
    redis_url: str,
    queue_name: str,
    other_queue: str,
    redis: aioredis.Redis,
    tmp_path: Path,
    procs: list[WorkerProcess],
) -> None:
    """F3: the children a SIGKILLed worker held are recovered by the stalled check and run
    again; the parent runs exactly once, after all of them, with all their values."""
    ledger = tmp_path / "ledger.jsonl"
    async with FlowProducer(redis_url) as producer:
        root = await producer.add(
            {
                "name": "parent",
                "queue": queue_name,
                "children": [
                    {"name": "part", "queue": other_queue, "data": {"sleep": 0.5, "value": i}}
                    for i in range(20)
                ],
            }
        )
    parent_worker = WorkerProcess(FLOW_JOB, queue_name, redis_url, ledger=ledger)
    procs.append(parent_worker)
    victim = WorkerProcess(FLOW_JOB, other_queue, redis_url, ledger=ledger, concurrency=10)
    procs.append(victim)
    children = Queue(other_queue, redis_url)
    parents = Queue(queue_name, redis_url)
    try:

        async def victim_busy() -> bool:
            return (await children.get_counts("active"))["active"] == 10

        await wait_until(victim_busy, within=30)
        held = set(await children.get_job_ids("active", 0, -1))
        victim.kill()
        procs.append(WorkerProcess(FLOW_JOB, other_queue, redis_url, ledger=ledger, concurrency=10))

        async def parent_done() -> bool:
            return await parents.get_job_state(root.ref.id) is JobState.COMPLETED

        await wait_until(parent_done, within=60)
        job = await parents.get_job(root.ref.id)
        assert job is not None
        assert job.returnvalue == {
            "children": sorted(str(c.ref) for c in root.children),
            "values": sorted(str(i) for i in range(20)),
        }
        assert (await children.get_counts("completed"))["completed"] == 20
        completed = [
            e
            for e in await stream_events(redis, queue_name, "completed")
            if e["job_id"] == root.ref.id
        ]
        assert len(completed) == 1
        starts = [x for x in read_ledger(ledger) if x["kind"] == "start"]
        assert len([x for x in starts if x["pid"] == parent_worker.proc.pid]) == 1
        stalled = [e["job_id"] for e in await stream_events(redis, other_queue, "stalled")]
        assert set(stalled) <= held and len(stalled) == len(set(stalled))
        assert job.processed_on is not None
        for child in root.children:
            child_job = await children.get_job(child.ref.id)
            assert child_job is not None and child_job.finished_on is not None
            assert child_job.finished_on <= job.processed_on
        assert await flow_problems(redis, [queue_name, other_queue]) == []
    finally:
        await children.close()
        await parents.close()


@pytest.mark.timeout(120)
async def test_child_over_the_stall_limit_fails_its_parent(
    redis_url: str,
    queue_name: str,
    other_queue: str,
    tmp_path: Path,
    procs: list[WorkerProcess],
) -> None:
    """A child that kills its worker is failed once it stalls over the limit, and its
    fail_parent_on_failure policy fails the parent (the stalled check defers the failure to
    the next worker, whose fail_job reaches the parent's queue)."""
    ledger = tmp_path / "ledger.jsonl"
    async with FlowProducer(redis_url) as producer:
        root = await producer.add(
            {
                "name": "parent",
                "queue": queue_name,
                "children": [
                    {
                        "name": "pill",
                        "queue": other_queue,
                        "data": {"die": True},
                        "opts": {"fail_parent_on_failure": True},
                    }
                ],
            }
        )
    procs.append(WorkerProcess(FLOW_JOB, queue_name, redis_url, ledger=ledger))
    async with Queue(queue_name, redis_url) as parents:

        async def parent_failed() -> bool:
            return await parents.get_job_state(root.ref.id) is JobState.FAILED

        deadline = time.monotonic() + 90
        while not await parent_failed():  # a supervisor restarting the child queue's worker
            assert time.monotonic() < deadline, "the parent never failed"
            proc = WorkerProcess(
                LEDGER_JOB, other_queue, redis_url, ledger=ledger, max_stalled_count=0
            )
            procs.append(proc)
            for _ in range(100):
                if proc.proc.poll() is not None or await parent_failed():
                    break
                await asyncio.sleep(0.1)
        job = await parents.get_job(root.ref.id)
        assert job is not None and job.failed_reason is not None
        assert "stalled more than allowable limit" in job.failed_reason
        async with Queue(other_queue, redis_url) as children:
            child = await children.get_job(root.children[0].ref.id)
        assert child is not None and child.state is JobState.FAILED
        assert child.failed_reason == "job stalled more than allowable limit (0)"
        parent_pid = procs[0].proc.pid
        pill_starts = [x for x in read_ledger(ledger) if x["pid"] != parent_pid]
        assert len([x for x in pill_starts if x["kind"] == "start"]) == 1


@pytest.mark.timeout(120)
async def test_same_flow_added_concurrently_from_five_processes_is_created_once(
    redis_url: str, queue_name: str, other_queue: str, redis: aioredis.Redis
) -> None:
    """X1 for flows: 1,000 concurrent adds of one flow (custom root id) over 50 connections
    in 5 processes make exactly one root and one set of children; every other add gets the
    existing flow back, flagged as a duplicate."""
    args = [sys.executable, "-m", "support.flow_adder", redis_url, queue_name, other_queue]
    pipe = asyncio.subprocess.PIPE
    adders = [
        await asyncio.create_subprocess_exec(
            *args, "200", "10", cwd=TESTS_DIR, stdout=pipe, stderr=pipe
        )
        for _ in range(5)
    ]
    lines: list[str] = []
    for adder in adders:
        out, err = await asyncio.wait_for(adder.communicate(), 90)
        assert adder.returncode == 0, err.decode()
        lines += out.decode().splitlines()
    results = [line.split() for line in lines]
    assert len(results) == 1000
    assert {r[0] for r in results} == {"nightly-report"}
    assert sum(r[1] == "0" for r in results) == 1
    assert {r[2] for r in results} == {"3"}
    async with Queue(queue_name, redis) as parents, Queue(other_queue, redis) as children:
        assert (await parents.get_counts())["waiting-children"] == 1
        assert sum((await parents.get_counts()).values()) == 1
        assert (await children.get_counts())["wait"] == 3
        assert sum((await children.get_counts()).values()) == 3
        deps = await parents.get_dependencies("nightly-report")
        assert len(deps.unprocessed) == 3
    assert len(await stream_events(redis, queue_name, "duplicated")) == 999
    assert len(await stream_events(redis, other_queue, "added")) == 3
    assert await flow_problems(redis, [queue_name, other_queue]) == []
