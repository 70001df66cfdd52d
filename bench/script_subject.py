"""A peer driven through a script of its own language and environment: every scenario is one
run of ``SCRIPT MODE --url URL ...`` that prints one JSON result line, and the worker speaks the
``bench.child`` protocol. Node BullMQ (``peers/bullmq.js``) and the Python peers
(``peers/py_*.py``) are all driven this way; each says how to read its progress in Redis."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from bench.subjects import QUEUE, Latency, Limits, WorkerSpec

RUN_TIMEOUT = 600.0


class ScriptSubject:
    """The scenarios as runs of one script; subclasses set the label and ``remaining``."""

    label = "?"
    limits = Limits()

    def __init__(self, url: str, command: list[str], cwd: Path, env: dict[str, str]) -> None:
        self.url = url
        self._command = command
        self._cwd = cwd
        self._env = env
        self.client = aioredis.Redis.from_url(url, decode_responses=True)

    def _argv(self, mode: str, *args: str) -> list[str]:
        return [*self._command, mode, "--url", self.url, *args]

    async def _run(self, mode: str, *args: str) -> dict[str, Any]:
        proc = await asyncio.create_subprocess_exec(
            *self._argv(mode, *args),
            cwd=self._cwd,
            env={**os.environ, **self._env},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            out, err = await asyncio.wait_for(proc.communicate(), RUN_TIMEOUT)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise
        if proc.returncode != 0:
            raise RuntimeError(
                f"{self.label} {mode} failed ({proc.returncode}):\n{err.decode()[-3000:]}"
            )
        lines = [line for line in out.decode().splitlines() if line.startswith("{")]
        if not lines:
            raise RuntimeError(f"{self.label} {mode} printed no result:\n{err.decode()[-3000:]}")
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
        return WorkerSpec(argv, self._cwd, dict(self._env))

    async def remaining(self, jobs: int) -> int:
        raise NotImplementedError

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
        await self.client.aclose()


async def bull_jobs_left(client: aioredis.Redis) -> int:
    """Jobs not finished in a BullMQ queue: a job leaves ``active`` in the same script that
    completes (or removes) it, so they are ``wait`` plus ``active``."""
    async with client.pipeline(transaction=False) as pipe:
        pipe.llen(f"bull:{QUEUE}:wait")
        pipe.llen(f"bull:{QUEUE}:active")
        waiting, active = await pipe.execute()
    return int(waiting) + int(active)
