"""``corral worker --health-port P``: liveness and Prometheus metrics on 127.0.0.1:P.

- ``GET /healthz``: ``200`` with a small JSON body while the worker is alive: its event loop
  answers (this server runs on it, so a blocked loop times the probe out) and its heartbeat was
  written within ``max(2 * lock_duration, 5 s)`` (``"status": "ok"``, or ``"stopping"`` while it
  finishes its jobs before exiting). ``503`` with ``"status": "stale"`` when the heartbeat is
  older than that (Redis unreachable, or the renewal stuck).
- ``GET /metrics``: the Prometheus text format, made by ``prometheus-client``: the worker's
  counters and gauges (``corral_worker_*``), its sandbox (``corral_sandbox_*``), the job counts
  of its queue read from Redis at scrape time (``corral_queue_jobs``), and the standard
  ``process_*`` and ``python_*`` metrics.

It listens on the loopback interface only; put a proxy in front to expose it further.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily
from prometheus_client.registry import Collector

from .job import ALL_STATES, LIST_STATES

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

    from .worker import Worker

HOST = "127.0.0.1"
REQUEST_TIMEOUT = 5.0  # seconds a client gets to send its request line and headers
COUNTS_TIMEOUT = 2.0  # seconds the scrape waits for the queue's counts
MAX_HEADER_LINES = 100


def heartbeat_limit_ms(worker: Worker) -> int:
    """How old the last heartbeat may be for the worker to count as alive."""
    return max(2 * worker.lock_duration, 5_000)


def liveness(worker: Worker) -> tuple[int, dict[str, Any]]:
    """The ``/healthz`` status code and body."""
    now = int(time.time() * 1000)
    beat = worker.last_beat_ms
    started = int(worker.stats.started_at * 1000)
    age = now - (beat if beat is not None else started)
    if age > heartbeat_limit_ms(worker):
        status = "stale"
    elif worker.closing:
        status = "stopping"
    else:
        status = "ok"
    body = {
        "status": status,
        "worker": worker.id,
        "queue": worker.name,
        "in_flight": worker.in_flight,
        "last_beat_age_ms": None if beat is None else now - beat,
        "restarts": worker.restarts,
        "recycling": worker.recycled,
    }
    return (503 if status == "stale" else 200), body


class WorkerCollector(Collector):
    """Reads the worker's state at scrape time; ``queue_counts`` is refreshed before each one."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self.queue_counts: dict[str, int] | None = None

    def collect(self) -> Iterable[Metric]:
        w, labels = self.worker, [self.worker.name]
        info = InfoMetricFamily("corral_worker", "This worker process", labels=["queue"])
        info.add_metric(labels, {"worker_id": w.id, "concurrency": str(w.concurrency)})
        yield info
        jobs = CounterMetricFamily(
            "corral_worker_jobs",
            "Job attempts finished by this worker",
            labels=["queue", "outcome"],
        )
        jobs.add_metric([*labels, "completed"], w.stats.completed)
        jobs.add_metric([*labels, "failed"], w.stats.failed)
        jobs.add_metric([*labels, "retried"], w.stats.retried)
        yield jobs
        yield _gauge("corral_worker_jobs_in_flight", "Jobs held now", labels, w.in_flight)
        yield _gauge(
            "corral_worker_concurrency", "Jobs run at once, at most", labels, w.concurrency
        )
        yield _gauge(
            "corral_worker_restarts",
            "Worker processes a supervisor ran before this one",
            labels,
            w.restarts,
        )
        yield _gauge(
            "corral_worker_stopping", "1 while finishing jobs before exiting", labels, w.closing
        )
        beat = w.last_beat_ms
        if beat is not None:
            age = max(time.time() - beat / 1000, 0.0)
            yield _gauge(
                "corral_worker_heartbeat_age_seconds", "Since the last heartbeat", labels, age
            )
        pool = w.sandbox
        if pool is not None:
            yield _gauge("corral_sandbox_children", "Live child processes", labels, len(pool.pids))
            for name, help_text, value in (
                ("corral_sandbox_children_started", "Children started", pool.stats.started),
                ("corral_sandbox_child_exits", "Children that died or were killed in a job",
                 pool.stats.exited),
                ("corral_sandbox_children_recycled", "Children replaced for memory",
                 pool.stats.recycled),
            ):  # fmt: skip
                counter = CounterMetricFamily(name, help_text, labels=["queue"])
                counter.add_metric(labels, value)
                yield counter
        if self.queue_counts is not None:
            counts = GaugeMetricFamily(
                "corral_queue_jobs", "Jobs of the queue by state", labels=["queue", "state"]
            )
            for state, count in self.queue_counts.items():
                counts.add_metric([*labels, state], count)
            yield counts
        yield _gauge(
            "corral_queue_reachable",
            "1 if the queue's counts were read from Redis for this scrape",
            labels,
            self.queue_counts is not None,
        )


def _gauge(name: str, help_text: str, labels: list[str], value: float) -> GaugeMetricFamily:
    gauge = GaugeMetricFamily(name, help_text, labels=["queue"])
    gauge.add_metric(labels, float(value))
    return gauge


class HealthServer:
    """The HTTP server of one worker (see the module docstring)."""

    def __init__(self, worker: Worker, port: int) -> None:
        self.worker = worker
        self.port = port
        self.registry = CollectorRegistry()
        self.collector = WorkerCollector(worker)
        self.registry.register(self.collector)
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        self._server: asyncio.Server | None = None

    async def start(self) -> HealthServer:
        """Listen on 127.0.0.1:port (raises ``OSError`` if the port is taken)."""
        self._server = await asyncio.start_server(self._handle, HOST, self.port)
        return self

    async def close(self) -> None:
        """Stop listening."""
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()

    async def _queue_counts(self) -> dict[str, int] | None:
        w = self.worker
        try:
            async with asyncio.timeout(COUNTS_TIMEOUT):
                async with w.client.pipeline(transaction=False) as pipe:
                    for state in ALL_STATES:
                        key = w.keys.of_state(state.value)
                        pipe.llen(key) if state in LIST_STATES else pipe.zcard(key)
                    replies: list[Any] = await pipe.execute()
        except Exception:
            return None
        return {s.value: int(n) for s, n in zip(ALL_STATES, replies, strict=True)}

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT):
                request = (await reader.readline()).decode("latin-1").split()
                for _ in range(MAX_HEADER_LINES):
                    if (await reader.readline()).strip() in (b"", b"\r\n"):
                        break
            status, content_type, body = await self._respond(request)
            head = (
                f"HTTP/1.1 {status} {_REASONS[status]}\r\nContent-Type: {content_type}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            )
            writer.write(head.encode("latin-1") + body)
            await writer.drain()
        except (TimeoutError, ConnectionError, UnicodeDecodeError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _respond(self, request: list[str]) -> tuple[int, str, bytes]:
        if len(request) < 2:
            return 400, "text/plain", b"bad request\n"
        method, path = request[0], request[1].split("?", 1)[0]
        if path not in ("/healthz", "/metrics"):
            return 404, "text/plain", b"not found: try /healthz or /metrics\n"
        if method != "GET":
            return 405, "text/plain", b"method not allowed\n"
        if path == "/healthz":
            code, body = liveness(self.worker)
            return code, "application/json", json.dumps(body).encode() + b"\n"
        self.collector.queue_counts = await self._queue_counts()
        return 200, CONTENT_TYPE_LATEST, generate_latest(self.registry)


_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    503: "Service Unavailable",
}
