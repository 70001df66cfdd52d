"""The child side of a sandboxed processor: one process that runs one job at a time.

``engine.sandbox`` starts it as ``python -c BOOTSTRAP CONFIG`` and talks to it over its stdin and
stdout, one JSON object per line (``engine.sandbox`` documents the messages). The processor's own
``print`` output goes to stderr, so it cannot corrupt the channel, and it reads EOF from stdin.

The child ignores SIGINT and SIGTERM (its worker decides when it stops) and exits at once when
its stdin closes: the worker closed it, or the worker died.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import importlib
import inspect
import itertools
import json
import os
import pickle
import signal
import threading
import traceback
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from .errors import Retry
from .pdeathsig import die_with_parent
from .serialization import dumps

MAX_STACK_LINES = 40


def describe(exc: BaseException) -> str:
    """``Type: message``, as the worker writes a failed reason."""
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def failure_report(exc: BaseException) -> dict[str, Any]:
    """What the worker needs to fail or retry the job as if the processor ran in-process."""
    lines = [line.rstrip("\n") for line in traceback.format_exception(exc)]
    report: dict[str, Any] = {
        "op": "done",
        "ok": False,
        "type": type(exc).__name__,
        "message": str(exc),
        "reason": describe(exc),
        "traceback": lines[-MAX_STACK_LINES:],
    }
    if isinstance(exc, Retry):
        report["retry_delay"] = exc.delay
        return report
    with contextlib.suppress(Exception):
        text = _pack(exc)
        _unpack(text)  # only send what the worker can read back
        report["pickled"] = text
    return report


def load(target: str) -> Any:
    """Import ``module:qualname``."""
    module_name, _, attr = target.partition(":")
    obj: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


class Channel:
    """Line-delimited JSON to the worker (blocking writes) and a reader thread from it."""

    def __init__(self, in_fd: int, out_fd: int, loop: asyncio.AbstractEventLoop) -> None:
        self._in = in_fd
        self._out = out_fd
        self._loop = loop
        self._lock = threading.Lock()
        self.jobs: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._calls: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._ids = itertools.count(1)

    def send(self, message: dict[str, Any]) -> None:
        data = (json.dumps(message, separators=(",", ":")) + "\n").encode()
        with self._lock:
            view = memoryview(data)
            while view:
                try:
                    written = os.write(self._out, view)
                except BrokenPipeError:
                    os._exit(0)  # the worker is gone
                view = view[written:]

    def start_reader(self) -> None:
        threading.Thread(target=self._read, name="corral-sandbox-reader", daemon=True).start()

    def _read(self) -> None:
        with open(self._in, "rb", buffering=1 << 16) as stream:
            for line in stream:
                self._loop.call_soon_threadsafe(self._dispatch, json.loads(line))
        os._exit(0)  # stdin closed: the worker stopped us, or died

    def _dispatch(self, message: dict[str, Any]) -> None:
        if message.get("op") == "run":
            self.jobs.put_nowait(message)
        elif message.get("op") == "reply":
            future = self._calls.pop(int(message["call"]), None)
            if future is not None and not future.done():
                future.set_result(message)

    async def call(self, method: str, args: tuple[Any, ...]) -> Any:
        """Call ``method(job_id, *args)`` on the running job's context in the worker; return its
        result or raise its error."""
        call_id = next(self._ids)
        future = self._loop.create_future()
        self._calls[call_id] = future
        self.send({"op": "call", "call": call_id, "method": method, "args": _pack(args)})
        reply = await future
        if "error" in reply:
            raise _unpack(reply["error"])
        return _unpack(reply["result"])


def _pack(value: Any) -> str:
    return base64.b64encode(pickle.dumps(value)).decode("ascii")


def _unpack(text: str) -> Any:
    return pickle.loads(base64.b64decode(text))


class ChildContext:
    """The ``JobContext`` of a job run in the child: every call (``update_progress``, ``log``
    and whatever else the worker's context offers) runs in the worker, for the running job."""

    def __init__(self, channel: Channel, loop: asyncio.AbstractEventLoop) -> None:
        self._channel = channel
        self._loop = loop

    def __getattr__(self, method: str) -> Callable[..., Awaitable[Any]]:
        if method.startswith("_"):
            raise AttributeError(method)

        async def call(job_id: str, *args: Any) -> Any:
            return await self._channel.call(method, args)

        return call

    def run_sync(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()


async def _run_one(
    processor: Any, message: dict[str, Any], context: ChildContext, max_result: int
) -> dict[str, Any]:
    job = dataclasses.replace(_unpack(message["job"]), context=context)
    try:
        if inspect.iscoroutinefunction(processor) or inspect.iscoroutinefunction(
            getattr(processor, "__call__", None)  # noqa: B004 - looking for an async __call__
        ):
            result = await processor(job)
        else:
            loop = asyncio.get_running_loop()
            with ThreadPoolExecutor(1, thread_name_prefix="corral-sandboxed") as pool:
                result = await loop.run_in_executor(pool, processor, job)
        if inspect.isawaitable(result):
            result = await result
        value = dumps(result, what=f"return value of job {job.id!r}", limit=max_result)
        return {"op": "done", "ok": True, "returnvalue": value}
    except BaseException as exc:
        return failure_report(exc)


async def _serve(processor: Any, in_fd: int, out_fd: int, max_result: int) -> None:
    loop = asyncio.get_running_loop()
    channel = Channel(in_fd, out_fd, loop)
    context = ChildContext(channel, loop)
    channel.send({"op": "ready", "pid": os.getpid()})
    channel.start_reader()
    while True:
        message = await channel.jobs.get()
        channel.send(await _run_one(processor, message, context, max_result))


def main(config: dict[str, Any]) -> None:
    """Run jobs for the worker until stdin closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    die_with_parent()
    # keep the channel on private descriptors; the processor's stdout goes to stderr
    in_fd, out_fd = os.dup(0), os.dup(1)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    os.dup2(2, 1)
    channel_out = out_fd
    try:
        processor = load(str(config["target"]))
        if not callable(processor):
            raise TypeError(f"{config['target']} is not callable")
    except BaseException as exc:
        line = json.dumps({"op": "fatal", "error": describe(exc)}) + "\n"
        os.write(channel_out, line.encode())
        os._exit(1)
    asyncio.run(_serve(processor, in_fd, out_fd, int(config["max_result"])))
