"""SyncFlowProducer: ``FlowProducer`` for code without asyncio. Like ``SyncQueue``, it runs a
private event loop in one daemon thread and waits for each call."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Iterable
from typing import Any, TypeVar

from .flows import FlowNode, FlowProducer, FlowTree
from .keys import DEFAULT_PREFIX

T = TypeVar("T")


class SyncFlowProducer:
    """Same methods as ``FlowProducer``, blocking. The connection must be a URL (or None)."""

    def __init__(
        self, connection: str | None = None, *, prefix: str = DEFAULT_PREFIX, **options: Any
    ) -> None:
        if connection is not None and not isinstance(connection, str):
            raise TypeError(
                "SyncFlowProducer takes a redis:// URL (an asyncio client belongs to a loop)"
            )
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="corral-sync-flows", daemon=True
        )
        self._thread.start()
        try:
            self._producer: FlowProducer = self._run(_make(connection, prefix, options))
        except BaseException:  # bad options: stop the thread started for nothing
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=5)
            self._loop.close()
            raise

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def close(self) -> None:
        """Close the connection and stop the private loop."""
        if self._loop.is_running():
            self._run(self._producer.close())
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=5)
        self._loop.close()

    def __enter__(self) -> SyncFlowProducer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def add(self, tree: FlowTree) -> FlowNode:
        """See ``FlowProducer.add``."""
        return self._run(self._producer.add(tree))

    def add_bulk(self, trees: Iterable[FlowTree]) -> list[FlowNode]:
        """See ``FlowProducer.add_bulk``."""
        return self._run(self._producer.add_bulk(list(trees)))

    def get_flow(
        self, queue: str, job_id: str, *, depth: int = 10, max_children: int = 1000
    ) -> FlowNode | None:
        """See ``FlowProducer.get_flow``."""
        return self._run(
            self._producer.get_flow(queue, job_id, depth=depth, max_children=max_children)
        )


async def _make(connection: str | None, prefix: str, options: dict[str, Any]) -> FlowProducer:
    return FlowProducer(connection, prefix=prefix, **options)
