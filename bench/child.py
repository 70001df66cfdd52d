"""A worker child process driven over JSON lines: it prints ``ready``, starts on ``go`` and
stops on ``stop``, then prints ``stopped`` with the CPU seconds it used after ``go``.

Both ``bench.corral_worker`` and ``peers/bullmq.js work`` speak this protocol, so the harness
times Corral's and BullMQ's workers the same way.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Self

READY_TIMEOUT = 30.0
STOP_TIMEOUT = 60.0


class ChildError(RuntimeError):
    """The child exited, or did not answer as the protocol says."""


class WorkerChild:
    """One running worker process."""

    def __init__(self, proc: asyncio.subprocess.Process, argv: Sequence[str]) -> None:
        self._proc = proc
        self._argv = list(argv)

    @classmethod
    async def spawn(
        cls, argv: Sequence[str], cwd: Path, env: Mapping[str, str] | None = None
    ) -> Self:
        """Start ``argv`` and wait until it reports ``ready``."""
        proc = await asyncio.create_subprocess_exec(
            *argv,
            cwd=cwd,
            env={**os.environ, **(env or {})},
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        child = cls(proc, argv)
        try:
            message = await asyncio.wait_for(child._read(), READY_TIMEOUT)
        except BaseException:
            await child.kill()
            raise
        if message.get("event") != "ready":
            await child.kill()
            raise ChildError(f"{argv[:3]} sent {message!r} instead of ready")
        return child

    async def _read(self) -> dict[str, Any]:
        assert self._proc.stdout is not None
        while True:
            line = await self._proc.stdout.readline()
            if not line:
                code = await self._proc.wait()
                raise ChildError(f"{self._argv[:3]} exited with status {code}")
            text = line.decode().strip()
            if text.startswith("{"):
                message: dict[str, Any] = json.loads(text)
                return message

    async def _send(self, command: str) -> None:
        assert self._proc.stdin is not None
        self._proc.stdin.write(f"{command}\n".encode())
        await self._proc.stdin.drain()

    async def go(self) -> None:
        """Let the worker start taking jobs."""
        await self._send("go")

    async def stop(self) -> float:
        """Close the worker gracefully; return the CPU seconds it used since ``go``."""
        await self._send("stop")
        message = await asyncio.wait_for(self._read(), STOP_TIMEOUT)
        await asyncio.wait_for(self._proc.wait(), STOP_TIMEOUT)
        return float(message["cpu_s"])

    async def kill(self) -> None:
        """Kill the child if it is still running (after an error)."""
        if self._proc.returncode is None:
            self._proc.kill()
            await self._proc.wait()
