"""``corral worker --health-port``: liveness and Prometheus metrics fetched from a real worker
process over HTTP on 127.0.0.1, and liveness going stale while its server is frozen."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import time
import urllib.error
import urllib.request

import pytest
from support.server import FaultServer
from support.workers import WorkerProcess, wait_until

from engine import Queue

SANDBOX_JOB = "support.sandbox_jobs:async_job"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _get(url: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.headers["Content-Type"], response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read().decode()


async def get(url: str) -> tuple[int, str, str]:
    """GET ``url`` off the event loop: status, content type, body."""
    return await asyncio.to_thread(_get, url)


def _sample(metrics: str, name: str, **labels: str) -> float | None:
    """The value of one sample of the text exposition, or None."""
    for line in metrics.splitlines():
        if line.startswith("#") or not line.startswith(name + "{"):
            continue
        head, _, value = line.rpartition(" ")
        if all(f'{k}="{v}"' in head for k, v in labels.items()):
            return float(value)
    return None


@pytest.mark.timeout(90)
async def test_health_port_serves_liveness_and_metrics_of_a_real_worker(
    redis_url: str, queue_name: str, procs: list[WorkerProcess]
) -> None:
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    async with Queue(queue_name, redis_url) as queue:
        await queue.add_bulk([("ok", {}) for _ in range(3)])
        await queue.add("bad", {"raise": "value"}, attempts=1)
        await queue.add("again", {"retry": 0}, attempts=2)
        await queue.add("slow", {"sleep": 60})
        worker = WorkerProcess(
            SANDBOX_JOB,
            queue_name,
            redis_url,
            concurrency=2,
            extra_args=("--sandbox", "--health-port", str(port)),
        )
        procs.append(worker)

        async def settled() -> bool:
            counts = await queue.get_counts("completed", "failed", "active")
            return counts == {"completed": 3, "failed": 2, "active": 1}

        await wait_until(settled, within=40)

        status, content_type, body = await get(f"{base}/healthz")
        assert (status, content_type) == (200, "application/json")
        health = json.loads(body)
        assert health["status"] == "ok"
        assert health["queue"] == queue_name
        assert health["in_flight"] == 1
        assert health["restarts"] == 0
        assert 0 <= health["last_beat_age_ms"] < 5_000

        status, content_type, metrics = await get(f"{base}/metrics")
        assert status == 200 and content_type.startswith("text/plain")
        q = {"queue": queue_name}
        assert _sample(metrics, "corral_worker_jobs_total", outcome="completed", **q) == 3
        assert _sample(metrics, "corral_worker_jobs_total", outcome="failed", **q) == 2
        assert _sample(metrics, "corral_worker_jobs_total", outcome="retried", **q) == 1
        assert _sample(metrics, "corral_worker_jobs_in_flight", **q) == 1
        assert _sample(metrics, "corral_worker_concurrency", **q) == 2
        assert _sample(metrics, "corral_sandbox_children", **q) == 2
        assert _sample(metrics, "corral_queue_jobs", state="completed", **q) == 3
        assert _sample(metrics, "corral_queue_jobs", state="active", **q) == 1
        assert _sample(metrics, "corral_queue_reachable", **q) == 1
        assert "process_resident_memory_bytes" in metrics

        assert (await get(f"{base}/nope"))[0] == 404

        # while it finishes its jobs after SIGTERM it is alive, and says it is stopping
        worker.signal(signal.SIGTERM)

        async def stopping() -> bool:
            status, _, body = await get(f"{base}/healthz")
            return status == 200 and json.loads(body)["status"] == "stopping"

        await wait_until(stopping, within=10)
        worker.signal(signal.SIGTERM)  # hand the slow job back now
        assert await asyncio.to_thread(worker.wait, 30) == 3


async def test_a_taken_health_port_is_a_usage_error(
    redis_url: str, queue_name: str, procs: list[WorkerProcess]
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        worker = WorkerProcess(
            SANDBOX_JOB, queue_name, redis_url, extra_args=("--health-port", str(port))
        )
        procs.append(worker)
        assert await asyncio.to_thread(worker.wait, 30) == 2
    assert f"--health-port {port}" in worker.output()


@pytest.mark.timeout(90)
async def test_healthz_is_503_stale_while_the_heartbeat_cannot_be_written(
    fresh_server: FaultServer, queue_name: str, procs: list[WorkerProcess]
) -> None:
    """The server is frozen (SIGSTOP): the worker's heartbeat cannot be written, while its own
    event loop, and so ``/healthz``, still answers; after the server goes on, it is ok again."""
    port = _free_port()
    healthz = f"http://127.0.0.1:{port}/healthz"
    # lock_duration 1 s: stale after max(2 x 1 s, 5 s) = 5 s without a heartbeat
    worker = WorkerProcess(
        SANDBOX_JOB,
        queue_name,
        fresh_server.url,
        lock_duration=1000,
        extra_args=("--health-port", str(port)),
    )
    procs.append(worker)

    async def status_is(wanted: str, code: int) -> bool:
        try:
            status, content_type, body = await get(healthz)
        except OSError:  # not listening yet
            return False
        health = json.loads(body)
        return (status, content_type, health["status"]) == (code, "application/json", wanted) and (
            health["last_beat_age_ms"] is not None  # it has written a heartbeat
        )

    await wait_until(lambda: status_is("ok", 200), within=30)
    fresh_server.pause()
    try:
        paused_at = time.monotonic()
        await wait_until(lambda: status_is("stale", 503), within=20, interval=0.2)
        assert time.monotonic() - paused_at >= 4.0  # not before the limit (less the beat period)
        _, _, body = await get(healthz)
        health = json.loads(body)
        assert health["status"] == "stale" and health["queue"] == queue_name
        assert health["last_beat_age_ms"] > 5_000
        assert worker.proc.poll() is None  # alive: only the heartbeat is stuck
    finally:
        fresh_server.resume()
    await wait_until(lambda: status_is("ok", 200), within=30, interval=0.2)
    _, _, body = await get(healthz)
    assert json.loads(body)["last_beat_age_ms"] < 5_000
    # no SIGTERM exit check here: after such a freeze the worker sometimes does not exit on
    # SIGTERM (its lock renewer keeps running); reported separately, the fixture kills it
