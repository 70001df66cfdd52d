"""The real BullMQ in Node for the BullMQ backend's tests: npm-installed once into the ignored
``tests/.node/bullmq<major>/`` (under a file lock, so parallel runs do not clash) and driven
through ``tests/bullmq_queues/node/*.js`` over stdin/stdout; and the workloads (a flow, jobs
finished at given minutes) that several tests have Node run."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TESTS_DIR = Path(__file__).resolve().parent.parent
NODE_ROOT = TESTS_DIR / ".node"
SCRIPTS = TESTS_DIR / "bullmq_queues" / "node"
PACKAGES: dict[str, dict[str, str]] = {
    # BullMQ 6 takes its Redis client as a peer dependency; 5 brings ioredis itself.
    "6": {"bullmq": "6.7.0", "ioredis": "5.11.1"},
    "5": {"bullmq": "5.81.5"},
}
REPLY_TIMEOUT = 60.0


class NodeUnavailable(RuntimeError):
    """Node or npm is missing, or npm could not install the packages."""


class NodeDriver:
    """One ``driver.js`` process: queues, a flow producer and workers of the real BullMQ."""

    def __init__(self, modules: Path, url: str, prefix: str = "bull") -> None:
        self.modules = modules
        self.url = url
        self.prefix = prefix
        self._proc: asyncio.subprocess.Process | None = None
        self._lock = asyncio.Lock()

    async def start(self) -> NodeDriver:
        """Start the Node process."""
        self._proc = await asyncio.create_subprocess_exec(
            "node",
            str(SCRIPTS / "driver.js"),
            "--url",
            self.url,
            "--prefix",
            self.prefix,
            env={**os.environ, "NODE_PATH": str(self.modules)},
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        return self

    async def call(self, op: str, **params: Any) -> Any:
        """Run one request and return its result; a Node error fails the test with its stack."""
        proc = self._proc
        assert proc is not None and proc.stdin is not None and proc.stdout is not None
        async with self._lock:
            proc.stdin.write((json.dumps({"op": op, **params}) + "\n").encode())
            await proc.stdin.drain()
            line = await asyncio.wait_for(proc.stdout.readline(), REPLY_TIMEOUT)
        if not line:
            raise RuntimeError(f"driver.js exited (status {proc.returncode}) during {op!r}")
        reply = json.loads(line)
        if not reply["ok"]:
            raise RuntimeError(f"driver.js {op!r} failed: {reply['error']}")
        return reply["result"]

    async def close(self) -> None:
        """Close queues and workers, then the process (killed if it does not exit)."""
        proc = self._proc
        if proc is None:
            return
        if proc.returncode is None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.call("close"), 15)
            try:
                await asyncio.wait_for(proc.wait(), 5)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        self._proc = None


class HoldingWorker:
    """``holding_worker.js``: a worker process that takes jobs and never finishes them."""

    def __init__(
        self,
        modules: Path,
        url: str,
        queue: str,
        *,
        prefix: str = "bull",
        concurrency: int = 1,
        lock_duration: int = 30_000,
        stalled_interval: int = 30_000,
    ) -> None:
        argv = [
            "node", str(SCRIPTS / "holding_worker.js"), "--url", url, "--queue", queue,
            "--prefix", prefix, "--concurrency", str(concurrency),
            "--lock-duration", str(lock_duration), "--stalled-interval", str(stalled_interval),
        ]  # fmt: skip
        self.argv = argv
        self.env = {**os.environ, "NODE_PATH": str(modules)}
        self.proc: asyncio.subprocess.Process | None = None
        self.taken: list[str] = []

    async def start(self) -> HoldingWorker:
        """Start the process and wait until its worker is connected."""
        self.proc = await asyncio.create_subprocess_exec(
            *self.argv, env=self.env, stdout=asyncio.subprocess.PIPE
        )
        await self._expect("ready")
        return self

    async def _expect(self, word: str) -> None:
        """Read lines until one is ``word``; jobs taken meanwhile (even before "ready") count."""
        assert self.proc is not None and self.proc.stdout is not None
        while True:
            line = (await asyncio.wait_for(self.proc.stdout.readline(), REPLY_TIMEOUT)).decode()
            if not line:
                raise RuntimeError("holding_worker.js exited")
            kind, _, rest = line.strip().partition(" ")
            if kind == "active":
                self.taken.append(rest)
            if kind == word:
                return

    async def wait_taken(self, count: int) -> list[str]:
        """Wait until the worker has taken ``count`` jobs; their ids."""
        while len(self.taken) < count:
            await self._expect("active")
        return list(self.taken)

    async def kill(self) -> None:
        """SIGKILL: the jobs stay in ``active`` and their locks expire."""
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()


# -- workloads the views' tests share ----------------------------------------------------------

MINUTE_MS = 60_000


async def _until(check: Callable[[], Awaitable[bool]], within: float = 30.0) -> None:
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {within} s")
        await asyncio.sleep(0.05)


@dataclass(frozen=True, slots=True)
class SampleFlow:
    """report (queue ``q``) <- fetch (``a``, completed), optional (``a``, failed, ignored by its
    parent), stuck (``a``, failed: the parent waits for it), render (``b``, no worker) <- chart
    (``b``); and doomed (``q``) <- fatal (``a``, failed with failParentOnFailure)."""

    q: str
    a: str
    b: str
    report: str
    fetch: str
    optional: str
    stuck: str
    render: str
    chart: str
    doomed: str
    fatal: str


def _child(name: str, queue: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "queueName": queue, **extra}


async def sample_flow(node: NodeDriver, q: str, a: str, b: str) -> SampleFlow:
    """Add the flows with a FlowProducer, run queue ``a`` with a worker until its four jobs
    have finished, then stop that worker."""
    failing = {"mode": "fail"}
    report = _child(
        "report",
        q,
        children=[
            _child("fetch", a, data={"n": 1}),
            _child("optional", a, data=failing, opts={"ignoreDependencyOnFailure": True}),
            _child("stuck", a, data=failing),
            _child("render", b, children=[_child("chart", b)]),
        ],
    )
    doomed = _child(
        "doomed", q, children=[_child("fatal", a, data=failing, opts={"failParentOnFailure": True})]
    )
    tree = await node.call("tree", tree=report)
    other = await node.call("tree", tree=doomed)
    fetch, optional, stuck, render = (child["id"] for child in tree["children"])
    flow = SampleFlow(
        q, a, b, tree["id"], fetch, optional, stuck, render,
        tree["children"][3]["children"][0]["id"], other["id"], other["children"][0]["id"],
    )  # fmt: skip
    handle = await node.call("worker", queue=a)
    wanted = {fetch: "completed", optional: "failed", stuck: "failed", flow.fatal: "failed"}

    async def finished() -> bool:
        return all([await node.call("state", queue=a, id=i) == s for i, s in wanted.items()])

    await _until(finished)
    await node.call("closeWorker", handle=handle)
    return flow


async def finish_at(node: NodeDriver, queue: str, at_ms: int, completed: int, failed: int) -> None:
    """Set Node's clock to ``at_ms`` and let the worker already running on ``queue`` complete
    and fail that many new jobs (its metrics then book them in that minute)."""
    await node.call("clock", at=at_ms)
    before: dict[str, int] = await node.call("counts", queue=queue)
    for i in range(completed):
        await node.call("add", queue=queue, name="ok", data={"i": i})
    for i in range(failed):
        await node.call("add", queue=queue, name="bad", data={"mode": "fail", "i": i})

    async def finished() -> bool:
        counts = await node.call("counts", queue=queue)
        return bool(
            counts["completed"] == before["completed"] + completed
            and counts["failed"] == before["failed"] + failed
        )

    await _until(finished)
