"""The event loop a command runs on: asyncio's own by default, uvloop on request.

uvloop (libuv under asyncio's API) makes socket writes and callbacks cheaper, which is most of
what a busy worker does besides running jobs (about 1.3x the jobs/s at concurrency 1). It is
not the default: under uvloop a write to a connection the server just reset raises
``RuntimeError`` inside redis-py instead of a connection error, which a worker cannot tell from
a bug, so a burst of resets can stop it (the N5 scenario found it). Code that runs a ``Worker``
or a ``Queue`` on its own loop keeps whatever loop it chose.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, Final, TypeVar

T = TypeVar("T")

LOOPS: Final = ("uvloop", "asyncio")


def uvloop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's ``new_event_loop``, or None where uvloop is not installed."""
    try:
        import uvloop
    except ImportError:
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def run(main: Coroutine[Any, Any, T], loop: str = "asyncio") -> T:
    """Run ``main`` to completion on a new loop of kind ``loop`` (uvloop falls back to
    asyncio's loop where it is not installed)."""
    if loop not in LOOPS:
        main.close()
        raise ValueError(f"loop={loop!r} is invalid: expected one of {', '.join(LOOPS)}")
    factory = uvloop_factory() if loop == "uvloop" else None
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)
