"""DaemonThreadExecutor: the threads ``def`` processors run in.

A Python thread cannot be stopped from outside. When an attempt times out or is cancelled, the
worker records the failure at once and *abandons* the thread: it runs on until the processor
returns, and its result is ignored. A standard ``ThreadPoolExecutor`` fits that badly: the
abandoned thread keeps its pool slot (the next job queues behind it) and is joined at
interpreter exit (``corral worker`` could not exit). This pool's threads are daemon threads, and
it starts a new thread whenever no thread is idle, so a call never waits behind an abandoned
one. A thread that finishes goes back to the pool, so there are at most as many threads as the
most calls ever running at once (the worker's concurrency plus the abandoned ones).
"""

from __future__ import annotations

import itertools
import queue
import sys
import threading
import traceback
from collections.abc import Callable
from concurrent import futures
from concurrent.futures import Executor, Future
from typing import Any, ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")

_Work = tuple[Future[Any], Callable[..., Any], tuple[Any, ...], dict[str, Any]]


class DaemonThreadExecutor(Executor):
    """An ``Executor`` of daemon threads that grows instead of queueing, and can abandon a call."""

    def __init__(self, thread_name_prefix: str = "corral") -> None:
        self._prefix = thread_name_prefix
        self._numbers = itertools.count(1)
        self._lock = threading.Lock()
        self._work: queue.SimpleQueue[_Work | None] = queue.SimpleQueue()
        self._idle = 0  # threads that will take the next call without being started
        self._threads = 0
        self._running: dict[Future[Any], threading.Thread] = {}
        self._abandoned: set[Future[Any]] = set()
        self._closed = False

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        """Run ``fn(*args, **kwargs)`` in an idle thread, or in a new one if none is idle."""
        future: Future[T] = Future()
        with self._lock:
            if self._closed:
                raise RuntimeError("cannot run new calls after shutdown")
            start = self._idle == 0
            if start:
                self._threads += 1
            else:
                self._idle -= 1
        self._work.put((future, fn, args, kwargs))
        if start:
            name = f"{self._prefix}-{next(self._numbers)}"
            threading.Thread(target=self._serve, name=name, daemon=True).start()
        return future

    def _serve(self) -> None:
        while (work := self._work.get()) is not None:
            future, fn, args, kwargs = work
            if future.set_running_or_notify_cancel():
                with self._lock:
                    self._running[future] = threading.current_thread()
                try:
                    result = fn(*args, **kwargs)
                except BaseException as exc:  # SystemExit and friends become the failure
                    future.set_exception(exc)
                else:
                    future.set_result(result)
                finally:
                    with self._lock:
                        del self._running[future]
                        self._abandoned.discard(future)
            with self._lock:
                if self._closed:
                    self._threads -= 1
                    return
                self._idle += 1
        with self._lock:
            self._threads -= 1

    def abandon(self, future: Future[Any]) -> threading.Thread | None:
        """Stop caring about ``future``: cancel it if it has not started, else count its thread
        as abandoned and return it."""
        if future.cancel():
            return None
        with self._lock:
            thread = self._running.get(future)
            if thread is not None:
                self._abandoned.add(future)
            return thread

    def stack_of(self, future: Future[Any]) -> list[str]:
        """Where the thread running ``future`` is right now, innermost call last."""
        with self._lock:
            thread = self._running.get(future)
        frame = sys._current_frames().get(thread.ident) if thread and thread.ident else None
        if frame is None:
            return []
        return [line.rstrip("\n") for line in traceback.format_stack(frame)]

    @property
    def abandoned(self) -> int:
        """Abandoned calls whose thread is still running them."""
        with self._lock:
            return len(self._abandoned)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Refuse new calls and let the threads exit once idle; with ``wait``, wait for the
        calls that were not abandoned (daemon threads never hold up interpreter exit)."""
        with self._lock:
            self._closed = True
            threads = self._threads
            running = [f for f in self._running if f not in self._abandoned]
        if cancel_futures:
            while True:
                try:
                    work = self._work.get_nowait()
                except queue.Empty:
                    break
                if work is not None:
                    work[0].cancel()
        for _ in range(threads):
            self._work.put(None)
        if wait:
            futures.wait(running)
