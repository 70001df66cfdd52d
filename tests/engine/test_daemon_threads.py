"""DaemonThreadExecutor: reuses idle threads, grows past abandoned ones, lets them exit."""

from __future__ import annotations

import threading
import time

import pytest

from engine.threads import DaemonThreadExecutor


def _wait_for(predicate: object, within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not met"
        time.sleep(0.01)


def test_idle_threads_are_reused_and_daemonic() -> None:
    pool = DaemonThreadExecutor("t")
    names = {pool.submit(lambda: threading.current_thread().name).result(5) for _ in range(20)}
    assert len(names) == 1  # one after the other: the same thread every time
    assert pool.submit(lambda: threading.current_thread().daemon).result(5) is True
    pool.shutdown()


def test_an_abandoned_call_does_not_hold_up_the_next_one() -> None:
    pool = DaemonThreadExecutor("t")
    release = threading.Event()
    stuck = pool.submit(release.wait, 30)
    _wait_for(lambda: pool.stack_of(stuck) != [])
    assert any("release.wait" in line or "wait" in line for line in pool.stack_of(stuck))
    thread = pool.abandon(stuck)
    assert thread is not None and thread.is_alive()
    assert pool.abandoned == 1
    assert pool.submit(lambda: "next").result(5) == "next"  # a second thread took it
    release.set()
    _wait_for(lambda: pool.abandoned == 0)
    assert stuck.result(5) is True
    pool.shutdown()
    _wait_for(lambda: not thread.is_alive())


def test_shutdown_refuses_new_calls_and_lets_threads_exit() -> None:
    pool = DaemonThreadExecutor("t")
    gate = threading.Event()
    busy = pool.submit(gate.wait, 30)
    idle_thread = pool.submit(threading.current_thread).result(5)
    pool.shutdown(wait=False)
    with pytest.raises(RuntimeError, match="after shutdown"):
        pool.submit(lambda: None)
    gate.set()
    assert busy.result(5) is True
    _wait_for(lambda: not idle_thread.is_alive())


def test_exceptions_of_any_kind_reach_the_future() -> None:
    pool = DaemonThreadExecutor("t")

    def leave() -> None:
        raise SystemExit(3)

    error = pool.submit(leave).exception(5)
    assert isinstance(error, SystemExit)
    assert pool.submit(lambda: 1).result(5) == 1  # the thread survived
    pool.shutdown()
