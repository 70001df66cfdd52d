"""DaemonThreadExecutor: runs each ``def`` processor call in a thread of its own.

A Python thread cannot be stopped from outside. When an attempt times out or is cancelled, the
worker records the failure at once and *abandons* the thread: it runs on until the processor
returns, and its result is ignored. A pooled thread would keep its pool slot (so the next job
would queue behind it) and would be joined at interpreter exit (so ``corral worker`` could not
exit); a daemon thread per call has neither problem. Starting a thread costs tens of
microseconds, small beside the Redis round trips of a job.
"""

from __future__ import annotations

import itertools
import sys
import threading
import traceback
from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import Any, ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")


class DaemonThreadExecutor(Executor):
    """An ``Executor`` that starts one daemon thread per call and can abandon a call's thread."""

    def __init__(self, thread_name_prefix: str = "corral") -> None:
        self._prefix = thread_name_prefix
        self._numbers = itertools.count(1)
        self._lock = threading.Lock()
        self._threads: dict[Future[Any], threading.Thread] = {}
        self._abandoned: set[threading.Thread] = set()
        self._closed = False

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        """Run ``fn(*args, **kwargs)`` in a new daemon thread."""
        future: Future[T] = Future()

        def run() -> None:
            try:
                if future.set_running_or_notify_cancel():
                    try:
                        result = fn(*args, **kwargs)
                    except BaseException as exc:  # SystemExit and friends become the failure
                        future.set_exception(exc)
                    else:
                        future.set_result(result)
            finally:
                with self._lock:
                    self._threads.pop(future, None)
                    self._abandoned.discard(thread)

        with self._lock:
            if self._closed:
                raise RuntimeError("cannot run new calls after shutdown")
            thread = threading.Thread(
                target=run, name=f"{self._prefix}-{next(self._numbers)}", daemon=True
            )
            self._threads[future] = thread
        thread.start()
        return future

    def abandon(self, future: Future[Any]) -> threading.Thread | None:
        """Stop caring about ``future``: its thread (if still running) is counted as abandoned."""
        with self._lock:
            thread = self._threads.get(future)
            if thread is not None and thread.is_alive():
                self._abandoned.add(thread)
                return thread
        return None

    def stack_of(self, future: Future[Any]) -> list[str]:
        """Where the thread running ``future`` is right now, innermost call last."""
        with self._lock:
            thread = self._threads.get(future)
        frame = sys._current_frames().get(thread.ident) if thread and thread.ident else None
        if frame is None:
            return []
        return [line.rstrip("\n") for line in traceback.format_stack(frame)]

    @property
    def abandoned(self) -> int:
        """Abandoned threads that are still running."""
        with self._lock:
            return sum(1 for t in self._abandoned if t.is_alive())

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Refuse new calls; with ``wait``, join the threads that were not abandoned."""
        with self._lock:
            self._closed = True
            running = [t for t in self._threads.values() if t not in self._abandoned]
            if cancel_futures:
                for future in self._threads:
                    future.cancel()
        if wait:
            for thread in running:
                thread.join()
