"""Node BullMQ as a benchmark subject: installed with npm into ``bench/.peers/node`` (ignored by
git) and driven through ``bench/peers/bullmq.js``, which prints one JSON result per run."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from bench.subjects import QUEUE, Latency, WorkerSpec

BENCH_DIR = Path(__file__).resolve().parent
NODE_DIR = BENCH_DIR / ".peers" / "node"
SCRIPT = BENCH_DIR / "peers" / "bullmq.js"
# BullMQ 6 takes its Redis client as an optional peer dependency: ioredis is its default.
PACKAGES = {"bullmq": "6.7.0", "ioredis": "5.11.1"}
RUN_TIMEOUT = 300.0


class PeerUnavailable(RuntimeError):
    """The peer cannot be installed or run here (no node/npm, or npm failed)."""


def _installed_version(package: str) -> str | None:
    manifest = NODE_DIR / "node_modules" / package / "package.json"
    try:
        version = json.loads(manifest.read_text(encoding="utf-8"))["version"]
    except (OSError, ValueError, KeyError):
        return None
    return str(version)


def ensure_node_peer() -> dict[str, str]:
    """Install the pinned packages unless present; return ``{package: version}`` installed."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        raise PeerUnavailable("node and npm are needed for the BullMQ peer")
    if any(_installed_version(name) != version for name, version in PACKAGES.items()):
        NODE_DIR.mkdir(parents=True, exist_ok=True)
        manifest = NODE_DIR / "package.json"
        if not manifest.exists():
            manifest.write_text('{"name": "corral-bench-peers", "private": true}\n')
        specs = [f"{name}@{version}" for name, version in PACKAGES.items()]
        done = subprocess.run(
            ["npm", "install", "--no-audit", "--no-fund", "--silent", *specs],
            cwd=NODE_DIR,
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise PeerUnavailable(f"npm install failed:\n{done.stderr[-2000:]}")
    return {name: _installed_version(name) or "?" for name in PACKAGES}


def node_version() -> str:
    """``node --version`` without the leading ``v``."""
    done = subprocess.run(["node", "--version"], capture_output=True, text=True, check=True)
    return done.stdout.strip().lstrip("v")


class NodeBullMQ:
    """BullMQ in Node: every scenario is one run of ``bullmq.js``."""

    label = "BullMQ (Node)"

    def __init__(self, url: str) -> None:
        self.url = url
        self._client = aioredis.Redis.from_url(url, decode_responses=True)
        self._env = {"NODE_PATH": str(NODE_DIR / "node_modules")}

    def _argv(self, mode: str, *args: str) -> list[str]:
        return ["node", str(SCRIPT), mode, "--url", self.url, *args]

    async def _run(self, mode: str, *args: str) -> dict[str, Any]:
        proc = await asyncio.create_subprocess_exec(
            *self._argv(mode, *args),
            cwd=BENCH_DIR,
            env={**os.environ, **self._env},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), RUN_TIMEOUT)
        if proc.returncode != 0:
            raise RuntimeError(f"bullmq.js {mode} failed ({proc.returncode}):\n{err.decode()}")
        lines = [line for line in out.decode().splitlines() if line.startswith("{")]
        result: dict[str, Any] = json.loads(lines[-1])
        return result

    async def add_one_by_one(self, jobs: int) -> float:
        result = await self._run("add", "--queue", QUEUE, "--jobs", str(jobs))
        return float(result["seconds"])

    async def add_bulk(self, jobs: int, chunk: int) -> float:
        result = await self._run(
            "bulk", "--queue", QUEUE, "--jobs", str(jobs), "--chunk", str(chunk)
        )
        return float(result["seconds"])

    async def seed(self, jobs: int, remove_on_complete: bool) -> None:
        flags = ["--remove-on-complete"] if remove_on_complete else []
        await self._run("seed", "--queue", QUEUE, "--jobs", str(jobs), *flags)

    def worker(self, concurrency: int) -> WorkerSpec:
        argv = self._argv("work", "--queue", QUEUE, "--concurrency", str(concurrency))
        return WorkerSpec(argv, BENCH_DIR, dict(self._env))

    async def remaining(self, jobs: int) -> int:
        # a job leaves `active` in the same script that completes (or removes) it
        async with self._client.pipeline(transaction=False) as pipe:
            pipe.llen(f"bull:{QUEUE}:wait")
            pipe.llen(f"bull:{QUEUE}:active")
            waiting, active = await pipe.execute()
        return int(waiting) + int(active)

    async def latency(self, rate: float, seconds: float) -> Latency:
        result = await self._run(
            "latency", "--queue", QUEUE, "--rate", str(rate), "--seconds", str(seconds)
        )
        return Latency(
            float(result["p50_ms"]),
            float(result["p99_ms"]),
            int(result["measured"]),
            float(result["achieved_rate"]),
        )

    async def ceiling(self, tasks: int, pipeline: int, seconds: float) -> float:
        result = await self._run(
            "ceiling", "--tasks", str(tasks), "--pipeline", str(pipeline), "--seconds", str(seconds)
        )
        return float(result["calls"]) / float(result["seconds"])

    async def close(self) -> None:
        await self._client.aclose()
