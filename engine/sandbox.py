"""Sandboxed processors: run a worker's processor in a pool of separate processes.

For CPU-bound jobs, and for code that may crash, call ``os._exit``, leak or hang: each child runs
one job at a time, and a child that dies takes only its own job with it. The job fails with
"processor exited: signal SIGKILL" (or "... exit code N") and is retried by its policy like any
other failure; the pool starts a replacement child at once.

``SandboxPool.run`` is an async processor, so the worker runs it exactly as it runs an
``async def`` processor: cancelling it (shutdown hand-back, a timeout) kills the child that runs
the job. ``SandboxPool.kill(job_id, error)`` kills the child of one job on purpose and makes the
job fail with ``error``.

The channel is the child's stdin/stdout, one JSON object per line:

- child → worker: ``ready`` (pid) or ``fatal`` (cannot import the processor) once at start;
  ``call`` (``call`` id, ``method`` of the job context, pickled ``args``) while a job runs;
  ``done`` with ``ok`` and ``returnvalue`` (JSON text), or the failure: ``type``, ``message``,
  ``reason``, ``traceback`` lines, ``retry_delay`` for ``Retry``, and ``pickled`` when the
  exception survives a pickle round trip.
- worker → child: ``run`` (the pickled ``Job``, without its context); ``reply`` to a call with
  the pickled ``result`` or ``error`` (e.g. ``LockLost`` when the lock was lost).

Pickled values travel as base64 text; both ends are the same code base and trust each other.
A job's context calls (``update_progress``, ``log`` and any other method the worker's context
has) run in the worker under its lock token, so they are fenced exactly as in-process.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import json
import logging
import pickle
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .errors import InvalidJobOptions, ProcessorExited, Retry, SandboxStartError
from .guards import rss_bytes
from .job import Job

log = logging.getLogger("corral.sandbox")

LINE_LIMIT = 64 * 1024 * 1024  # longest message line (a return value is at most max_result)
START_TIMEOUT = 60.0  # seconds for a child to import the processor and say ready
CLOSE_TIMEOUT = 5.0

_BOOTSTRAP = (
    "import json, sys\n"
    "config = json.loads(sys.argv[1])\n"
    "sys.path[:] = config['path']\n"
    "from engine.sandbox_child import main\n"
    "main(config)\n"
)


class RemoteTraceback(Exception):
    """The traceback of an exception raised in a sandbox child (the ``__cause__`` of it here)."""

    def __init__(self, lines: list[str]) -> None:
        super().__init__("\n".join(lines))

    def __str__(self) -> str:
        return "\n" + str(self.args[0])


class SandboxedError(Exception):
    """Stands in for an exception raised in a child that could not be brought back as itself;
    each carries the original class name (``type(exc).__name__``)."""


def processor_target(processor: Callable[..., Any]) -> str:
    """``module:qualname`` of ``processor``; raise unless a child can import it by that name."""
    module = getattr(processor, "__module__", None)
    qualname = getattr(processor, "__qualname__", None)
    if not module or not qualname or "<" in qualname or module == "__main__":
        raise InvalidJobOptions(
            f"processor={processor!r} cannot be sandboxed: a sandboxed processor must be a "
            "module-level function a child process can import (not a lambda, a closure, a "
            "bound method or a function defined in __main__)"
        )
    target = f"{module}:{qualname}"
    found: Any = sys.modules.get(module)
    for part in qualname.split("."):
        found = getattr(found, part, None)
    if found is not processor:
        raise InvalidJobOptions(
            f"processor={processor!r} cannot be sandboxed: {target} does not name it"
        )
    return target


def exit_reason(returncode: int) -> str:
    """ "processor exited: signal SIGKILL" / "processor exited: exit code 1"."""
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = str(-returncode)
        return f"processor exited: signal {name}"
    return f"processor exited: exit code {returncode}"


def pack(value: Any) -> str:
    """``value`` pickled, as base64 text for a JSON message."""
    return base64.b64encode(pickle.dumps(value)).decode("ascii")


def unpack(text: str) -> Any:
    """The value ``pack`` sent."""
    return pickle.loads(base64.b64decode(text))


def rebuild_error(report: dict[str, Any]) -> Exception:
    """The exception a child reported, as itself when possible, its traceback as the cause."""
    exc: Exception | None = None
    if report.get("retry_delay") is not None:
        exc = Retry(int(report["retry_delay"]), str(report.get("message") or "retry requested"))
    elif report.get("pickled"):
        with contextlib.suppress(Exception):
            loaded = unpack(report["pickled"])
            # BaseExceptions (SystemExit, CancelledError...) would mean something else here
            exc = loaded if isinstance(loaded, Exception) else None
    if exc is None:
        name = str(report.get("type") or "Error")
        name = name if name.isidentifier() else "Error"
        exc = type(name, (SandboxedError,), {"__module__": "sandbox"})(report.get("message", ""))
    exc.__cause__ = RemoteTraceback([str(x) for x in report.get("traceback", [])])
    return exc


class _Child:
    """One child process and its channel; runs one job at a time."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.pid = proc.pid
        self.job: Job | None = None
        self.kill_error: BaseException | None = None
        self.killed = False
        self._ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._done: asyncio.Future[dict[str, Any]] | None = None
        self._calls: set[asyncio.Task[None]] = set()
        self.reader = asyncio.create_task(self._read())

    @property
    def alive(self) -> bool:
        return not self.killed and self.proc.returncode is None and not self.reader.done()

    async def wait_ready(self) -> None:
        try:
            await asyncio.wait_for(asyncio.shield(self._ready), START_TIMEOUT)
        except TimeoutError:
            self.kill()
            raise SandboxStartError(
                f"sandbox child {self.pid} did not start within {START_TIMEOUT:.0f} s"
            ) from None

    def kill(self) -> None:
        self.killed = True
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()

    async def run(self, job: Job) -> dict[str, Any]:
        """Send ``job`` to the child; return its ``done`` report or raise why it has none."""
        loop = asyncio.get_running_loop()
        self.job = job
        self.kill_error = None
        done: asyncio.Future[dict[str, Any]] = loop.create_future()
        self._done = done
        try:
            await self._send({"op": "run", "job": pack(dataclasses.replace(job, context=None))})
            return await done
        finally:
            self.job = None
            self._done = None

    async def close(self) -> None:
        """Close the channel (the child exits on EOF); kill it if it lingers."""
        stdin = self.proc.stdin
        if stdin is not None and not stdin.is_closing():
            stdin.close()
        try:
            await asyncio.wait_for(self.proc.wait(), CLOSE_TIMEOUT)
        except TimeoutError:
            self.kill()
            await self.proc.wait()
        await asyncio.gather(self.reader, return_exceptions=True)

    async def _send(self, message: dict[str, Any]) -> None:
        stdin = self.proc.stdin
        assert stdin is not None
        try:
            stdin.write((json.dumps(message, separators=(",", ":")) + "\n").encode())
            await stdin.drain()
        except (BrokenPipeError, ConnectionResetError):
            pass  # the child died; the reader reports how

    async def _read(self) -> None:
        stdout = self.proc.stdout
        assert stdout is not None
        try:
            while line := await stdout.readline():
                self._dispatch(json.loads(line))
        except (ValueError, asyncio.LimitOverrunError) as exc:
            log.error("sandbox child %d sent an unreadable message (%s); killing it", self.pid, exc)
            self.kill()
        returncode = await self.proc.wait()
        reason = exit_reason(returncode)
        if not self._ready.done():
            self._ready.set_exception(SandboxStartError(f"sandbox child {self.pid}: {reason}"))
        if self._done is not None and not self._done.done():
            self._done.set_exception(self.kill_error or ProcessorExited(reason))
        for task in self._calls:
            task.cancel()

    def _dispatch(self, message: dict[str, Any]) -> None:
        op = message.get("op")
        if op == "ready" and not self._ready.done():
            self._ready.set_result(None)
        elif op == "fatal" and not self._ready.done():
            self._ready.set_exception(
                SandboxStartError(f"sandbox child cannot load the processor: {message['error']}")
            )
        elif op == "done" and self._done is not None and not self._done.done():
            self._done.set_result(message)
        elif op == "call":
            task = asyncio.create_task(self._answer(message))
            self._calls.add(task)
            task.add_done_callback(self._calls.discard)

    async def _answer(self, message: dict[str, Any]) -> None:
        """Call the running job's context (progress, log, ...) for the child; reply either way."""
        reply: dict[str, Any] = {"op": "reply", "call": message["call"]}
        job, method = self.job, str(message.get("method", ""))
        try:
            if job is None or job.context is None:
                raise RuntimeError("no job is running in this sandbox child")
            if method.startswith("_") or method == "run_sync":
                raise AttributeError(f"a sandboxed job cannot call {method!r}")
            result = await getattr(job.context, method)(job.id, *unpack(message["args"]))
            reply["result"] = pack(result)
        except Exception as exc:
            reply["error"] = _pack_error(exc)
        await self._send(reply)


def _pack_error(exc: Exception) -> str:
    """``exc`` pickled if it survives the round trip, else a RuntimeError naming it."""
    try:
        text = pack(exc)
        unpack(text)
        return text
    except Exception:
        return pack(RuntimeError(f"{type(exc).__name__}: {exc}"))


@dataclass(slots=True)
class SandboxStats:
    """What the pool has done since it started (for logs and metrics)."""

    started: int = 0
    exited: int = 0  # children that died while running a job, or were killed
    recycled: int = 0  # children replaced because they were over the memory limit


_Slot = _Child | asyncio.Task[_Child]


class SandboxPool:
    """``size`` child processes running ``target`` (``module:function``), one job each."""

    def __init__(
        self,
        target: str,
        size: int,
        *,
        max_result: int,
        name: str = "",
        max_memory: int | None = None,
    ) -> None:
        if not isinstance(size, int) or isinstance(size, bool) or size < 1:
            raise InvalidJobOptions(f"sandbox size={size!r} is invalid: expected an integer >= 1")
        self.target = target
        self.size = size
        self.name = name
        self._max_result = max_result
        self.max_memory = max_memory  # a child over it after a job is replaced
        self._slots: asyncio.Queue[_Slot] = asyncio.Queue()
        self._children: set[_Child] = set()
        self._by_job: dict[str, _Child] = {}
        self._reapers: set[asyncio.Future[None]] = set()
        self._closed = False
        self.stats = SandboxStats()

    @classmethod
    def for_processor(
        cls,
        processor: Callable[..., Any],
        size: int,
        *,
        max_result: int,
        name: str = "",
        max_memory: int | None = None,
    ) -> SandboxPool:
        """A pool for ``processor``, which children import by its module and name."""
        return cls(
            processor_target(processor),
            size,
            max_result=max_result,
            name=name,
            max_memory=max_memory,
        )

    @property
    def pids(self) -> list[int]:
        """Process ids of the live children."""
        return sorted(c.pid for c in self._children if c.alive)

    async def start(self) -> None:
        """Start every child and wait until each has imported the processor."""
        children = await asyncio.gather(
            *(self._spawn() for _ in range(self.size)), return_exceptions=True
        )
        errors = [c for c in children if isinstance(c, BaseException)]
        for child in children:
            if isinstance(child, _Child):
                self._slots.put_nowait(child)
        if errors:
            await self.close()
            raise errors[0]

    async def run(self, job: Job) -> Any:
        """Run ``job`` in a free child; return its value or raise its error (the processor)."""
        child = await self._acquire()
        self._by_job[job.id] = child
        try:
            report = await child.run(job)
        except BaseException:
            child.kill()  # it died, was killed, or the job was abandoned (cancelled)
            raise
        finally:
            del self._by_job[job.id]
            self._release(child)
        if report.get("ok"):
            return json.loads(report["returnvalue"])
        raise rebuild_error(report)

    def kill(self, job_id: str, error: BaseException | None = None) -> bool:
        """Kill the child running ``job_id``; the job then fails with ``error`` (default: a
        ``ProcessorExited`` naming the signal). False if no child runs that job."""
        child = self._by_job.get(job_id)
        if child is None or not child.alive:
            return False
        child.kill_error = error
        child.kill()
        return True

    async def close(self) -> None:
        """Stop every child (busy ones are killed; the worker hands their jobs back first)."""
        self._closed = True
        while not self._slots.empty():
            slot = self._slots.get_nowait()
            if isinstance(slot, asyncio.Task):
                slot.cancel()
                with contextlib.suppress(BaseException):
                    self._children.add(await slot)
        for child in list(self._children):
            if child.job is not None:
                child.kill()
        await asyncio.gather(*(c.close() for c in self._children), return_exceptions=True)
        await asyncio.gather(*self._reapers, return_exceptions=True)
        self._children.clear()

    # ---- children --------------------------------------------------------------------------

    async def _spawn(self) -> _Child:
        config = {"target": self.target, "path": sys.path, "max_result": self._max_result}
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            _BOOTSTRAP,
            json.dumps(config),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            limit=LINE_LIMIT,
            start_new_session=True,  # a Ctrl-C in the terminal is the worker's to handle
        )
        child = _Child(proc)
        self._children.add(child)
        try:
            await child.wait_ready()
        except BaseException:
            self._children.discard(child)
            child.kill()
            await asyncio.shield(child.close())
            raise
        self.stats.started += 1
        log.debug("sandbox %s: child %d ready", self.name, child.pid)
        return child

    async def _acquire(self) -> _Child:
        if self._closed:
            raise RuntimeError("the sandbox pool is closed")
        slot = await self._slots.get()
        if isinstance(slot, _Child) and slot.alive:
            return slot
        if isinstance(slot, _Child):
            slot = asyncio.create_task(self._spawn())  # died while idle
        try:
            return await asyncio.shield(slot)
        except asyncio.CancelledError:
            self._slots.put_nowait(slot)  # keep the slot for the next job
            raise
        except Exception:
            self._slots.put_nowait(asyncio.create_task(self._spawn()))
            raise

    def _release(self, child: _Child) -> None:
        if child.alive and child.job is None:
            rss = rss_bytes(child.pid) if self.max_memory is not None else None
            if rss is None or self.max_memory is None or rss <= self.max_memory:
                self._slots.put_nowait(child)
                return
            self.stats.recycled += 1
            log.warning(
                "sandbox %s: child %d uses %d MiB, over the %d MiB limit; replacing it",
                self.name,
                child.pid,
                rss >> 20,
                self.max_memory >> 20,
            )
        else:
            self.stats.exited += 1
            log.warning(
                "sandbox %s: child %d is gone; starting a replacement", self.name, child.pid
            )
        self._children.discard(child)
        reaper = asyncio.ensure_future(child.close())
        self._reapers.add(reaper)
        reaper.add_done_callback(self._reapers.discard)
        if not self._closed:
            self._slots.put_nowait(asyncio.create_task(self._spawn()))
