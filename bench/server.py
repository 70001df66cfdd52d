"""The private server every measurement runs against, and what it reports about itself."""

from __future__ import annotations

from types import TracebackType
from typing import Self

import redis.asyncio as aioredis

from engine.server import EmbeddedServer


class BenchServer:
    """An ``EmbeddedServer`` on 127.0.0.1 (no RDB, no AOF) plus an admin client for it."""

    def __init__(self) -> None:
        self._server = EmbeddedServer(persistence="none")
        self._admin: aioredis.Redis | None = None

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:PORT/0``."""
        return self._server.url

    @property
    def admin(self) -> aioredis.Redis:
        """A decoded-responses client for flushing, INFO and polling."""
        if self._admin is None:
            raise RuntimeError("the server is not started")
        return self._admin

    async def __aenter__(self) -> Self:
        self._server.start()
        self._admin = aioredis.Redis.from_url(self.url, decode_responses=True)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._admin is not None:
            await self._admin.aclose()
        self._server.close()

    async def flush(self) -> None:
        """Empty every database (loaded scripts stay cached)."""
        await self.admin.flushall()

    async def version(self) -> str:
        """E.g. ``valkey 8.1.1``."""
        info = await self.admin.info("server")
        if "valkey_version" in info:
            return f"valkey {info['valkey_version']}"
        return f"redis {info['redis_version']}"

    async def cpu_seconds(self) -> float:
        """CPU time (user + system) the server process has used so far."""
        info = await self.admin.info("cpu")
        return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])
