"""Servers for tests: the engine's ``EmbeddedServer`` with fault hooks, and an external server.

``FaultServer`` enables ``DEBUG`` (from loopback only) and adds ways to break the connection
between clients and the server. ``ExternalServer`` stands for a server the suite did not start
(``CORRAL_TEST_REDIS_URL``); it can be used but not killed.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final, Protocol
from urllib.parse import urlsplit

import redis

from engine.server import (
    EmbeddedServer,
    Persistence,
    ServerError,
    find_running_server,
    server_binary,
)

__all__ = [
    "EXTERNAL_URL_ENV",
    "EmbeddedServer",
    "ExternalServer",
    "FaultServer",
    "RunningServer",
    "ServerError",
    "ServerFactory",
    "external_redis_url",
    "find_running_server",
    "server_binary",
]

EXTERNAL_URL_ENV: Final = "CORRAL_TEST_REDIS_URL"
LOOPBACK_HOSTS: Final = frozenset({"127.0.0.1", "localhost"})


class RunningServer(Protocol):
    """What the session-wide ``server`` fixture offers, whoever started the server."""

    @property
    def url(self) -> str: ...

    def config_set(self, name: str, value: str | int | float) -> None: ...


def external_redis_url() -> str | None:
    """``$CORRAL_TEST_REDIS_URL`` if set; raise ``ValueError`` unless it points at this host."""
    url = os.environ.get(EXTERNAL_URL_ENV)
    if not url:
        return None
    parts = urlsplit(url)
    if parts.scheme != "redis" or parts.hostname not in LOOPBACK_HOSTS:
        raise ValueError(
            f"{EXTERNAL_URL_ENV}={url!r} is refused: tests only run against "
            "redis://127.0.0.1 or redis://localhost"
        )
    return url


class ExternalServer:
    """A server started outside the suite, given by URL."""

    def __init__(self, url: str) -> None:
        self.url = url

    def client(self, *, decode_responses: bool = True) -> redis.Redis:
        """A new synchronous client; the caller closes it."""
        return redis.Redis.from_url(self.url, decode_responses=decode_responses)

    def config_set(self, name: str, value: str | int | float) -> None:
        """Run ``CONFIG SET`` on the server."""
        client = self.client()
        try:
            client.config_set(name, value)
        finally:
            client.close()

    def __repr__(self) -> str:
        return f"<ExternalServer {self.url}>"


class FaultServer(EmbeddedServer):
    """An ``EmbeddedServer`` for fault tests: DEBUG enabled, plus connection-breaking helpers."""

    def __init__(
        self,
        port: int | None = None,
        data_dir: Path | str | None = None,
        persistence: Persistence = "none",
        *,
        notify_keyspace_events: str = "",
        extra_args: Sequence[str] = (),
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("enable_debug_command", True)
        super().__init__(
            port,
            data_dir,
            persistence,
            notify_keyspace_events=notify_keyspace_events,
            extra_args=extra_args,
            **kwargs,
        )

    def drop_clients(self) -> int:
        """Close every normal client connection (as a network blip would); return how many."""
        client = self.client()
        try:
            killed: int = client.client_kill_filter(_type="normal", skipme=True)
            return killed
        finally:
            client.close()

    @contextmanager
    def paused(self) -> Iterator[None]:
        """Freeze the process (SIGSTOP) for the ``with`` block, then let it go on (SIGCONT)."""
        self.pause()
        try:
            yield
        finally:
            self.resume()

    def debug_sleep(self, seconds: float) -> None:
        """Make the server block for ``seconds`` (``DEBUG SLEEP``), as a slow server would."""
        client = self.client(timeout=seconds + 5)
        try:
            client.execute_command("DEBUG", "SLEEP", seconds)  # type: ignore[no-untyped-call]
        finally:
            client.close()


ServerFactory = Callable[..., FaultServer]
"""The ``server_factory`` fixture: ``FaultServer`` arguments in, a started server out."""
