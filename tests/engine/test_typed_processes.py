"""Typed jobs with a real ``corral worker --types MODULE:NAME`` process: the processor gets the
typed object (a dataclass or a pydantic model), data that no longer matches fails at once, and a
bad ``--types`` exits 2."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator

import pytest
from support.typed_jobs import TYPES
from support.workers import TESTS_DIR, wait_until

from engine import JobState, Queue


def start_worker(queue: str, url: str, types: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "corral", "worker", "support.typed_jobs:typed_job",
         "--queue", queue, "--redis", url, "--types", types],
        cwd=TESTS_DIR, env=dict(os.environ), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True,
    )  # fmt: skip


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()


@pytest.mark.timeout(90)
async def test_a_worker_process_runs_typed_jobs_and_fails_stale_data_at_once(
    redis_url: str, queue_name: str, procs: list[subprocess.Popen[str]]
) -> None:
    async with (
        Queue(queue_name, redis_url, types=TYPES) as typed,
        Queue(queue_name, redis_url) as unchecked,
    ):
        good = await typed.add("send-email", {"to": "a@b.c", "subject": "hi", "priority": "high"})
        stale = await unchecked.add("send-email", {"to": "a@b.c"}, attempts=3)  # no subject
        order = await typed.add(
            "place-order",
            {"email": "a@b.c", "items": [{"sku": "A", "qty": 2}, {"sku": "B", "qty": 3}],
             "when": "2030-01-01T09:30+01:00"},
        )  # fmt: skip
        stale_order = await unchecked.add(
            "place-order",
            {"email": "a@b.c", "items": [{"sku": "A", "qty": 0}], "when": "2030-01-01"},
            attempts=3,
        )
        procs.append(start_worker(queue_name, redis_url, "support.typed_jobs:TYPES"))

        async def both_done() -> bool:
            counts = await typed.get_counts("completed", "failed")
            return counts["completed"] + counts["failed"] == 4

        await wait_until(both_done, within=30)
        done = await typed.get_job(good.id)
        assert done is not None and done.state is JobState.COMPLETED
        assert done.returnvalue == {"schema": "EmailJob", "to": "a@b.c", "priority": "high"}
        failed = await typed.get_job(stale.id)
        assert failed is not None and failed.state is JobState.FAILED
        assert failed.attempts_made == 1  # not retried: the data will not change
        assert failed.failed_reason is not None
        assert failed.failed_reason.startswith("InvalidJobData: field 'subject': missing")
        done = await typed.get_job(order.id)
        assert done is not None and done.state is JobState.COMPLETED, done and done.failed_reason
        assert done.returnvalue == {  # rebuilt as the model, its items as models, a datetime
            "schema": "OrderJob",
            "item_types": ["OrderItem"],
            "qty": 5,
            "when": "2030-01-01T09:30:00+01:00",
        }
        failed = await typed.get_job(stale_order.id)
        assert failed is not None and failed.state is JobState.FAILED
        assert failed.attempts_made == 1
        assert failed.failed_reason is not None
        assert failed.failed_reason.startswith(
            "InvalidJobData: field 'items[0].qty': Input should be greater than 0"
        )
        assert failed.failed_reason.endswith(
            "(data of job 'place-order' no longer matches schema OrderJob)"
        )
        procs[0].send_signal(signal.SIGTERM)
        assert procs[0].wait(30) == 0


@pytest.mark.timeout(60)
def test_types_that_are_not_a_registry_exit_2(
    redis_url: str, queue_name: str, procs: list[subprocess.Popen[str]]
) -> None:
    proc = start_worker(queue_name, redis_url, "support.typed_jobs:NOT_TYPES")
    procs.append(proc)
    assert proc.wait(30) == 2
    assert proc.stdout is not None
    assert "cannot load job types 'support.typed_jobs:NOT_TYPES'" in proc.stdout.read()
