"""Building Redis clients: from a URL or a given client, with retries, and the server check."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from redis._parsers.base import BaseParser
from redis.asyncio import BlockingConnectionPool, ConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff, NoBackoff
from redis.exceptions import (
    BusyLoadingError,
    ConnectionError,
    MasterDownError,
    OutOfMemoryError,
    ReadOnlyError,
    ResponseError,
    TimeoutError,
)

from .errors import ClusterNotSupported, UnsafeServerConfig

DEFAULT_URL = "redis://127.0.0.1:6379/0"
MIN_VERSIONS = {"redis": (7, 0, 0), "valkey": (7, 2, 0)}
SAFE_EVICTION_POLICY = "noeviction"
"""The only ``maxmemory-policy`` under which the server never drops a job's keys."""


class WritesRefused(ResponseError):
    """``MISCONF``: the server refuses writes until a background save succeeds again."""


class ServerDemoted(ResponseError):
    """``UNBLOCKED``: the server ended a blocking command (``BZPOPMIN``) because it stopped
    being a primary (a failover made it a replica)."""


# redis-py maps OOM, LOADING, READONLY... to exception classes but not MISCONF or UNBLOCKED;
# name them too, so they can be told apart from a real script error (still ResponseErrors for
# everyone else).
BaseParser.EXCEPTION_CLASSES.setdefault("MISCONF", WritesRefused)
BaseParser.EXCEPTION_CLASSES.setdefault("UNBLOCKED", ServerDemoted)

NOT_PRIMARY_ERRORS: tuple[type[Exception], ...] = (ReadOnlyError, ServerDemoted, MasterDownError)
"""The connection leads to a replica (``READONLY``, ``UNBLOCKED``, ``MASTERDOWN``): the
server was demoted by a failover. The connection is dropped and the call retried on a new one,
made to the configured address, which leads to the new primary once the failover moved it."""

# Errors after which the same call may succeed later: the connection, a loading server, a
# server that refuses writes for now (out of memory, failed save), and a server that is a
# replica now. Scripts declare #!lua (none is no-writes), so a refused script never ran: a
# replica refuses it before it starts, and retrying it is safe.
TRANSIENT_ERRORS: tuple[type[Exception], ...] = (
    ConnectionError,
    TimeoutError,
    BusyLoadingError,
    OutOfMemoryError,
    WritesRefused,
    *NOT_PRIMARY_ERRORS,
)


def describe_error(exc: BaseException) -> str:
    """``exc`` for a log line; a replica's refusal says that the server is a replica."""
    if isinstance(exc, NOT_PRIMARY_ERRORS):
        return f"the server is a read-only replica, not the primary: {exc}"
    return str(exc)


MAX_CONNECTIONS = 64  # per client; pipelines and scripts keep each use short

Connection = str | Redis | None


def default_url() -> str:
    """``REDIS_URL`` from the environment, else the local default."""
    return os.environ.get("REDIS_URL") or DEFAULT_URL


def make_client(connection: Connection, **overrides: Any) -> tuple[Redis, bool]:
    """A decoded-responses asyncio client, and whether the caller owns (and must close) it."""
    if isinstance(connection, Redis):
        if not connection.get_encoder().decode_responses:  # type: ignore[no-untyped-call]
            raise ValueError("connection: the redis.asyncio client needs decode_responses=True")
        return connection, False
    if connection is not None and not isinstance(connection, str):
        raise TypeError(
            f"connection={connection!r} is invalid: expected a redis:// URL or a "
            "redis.asyncio.Redis client"
        )
    options: dict[str, Any] = {
        "decode_responses": True,
        "retry": Retry(ExponentialWithJitterBackoff(cap=2.0, base=0.05), retries=3),
        "retry_on_error": list(TRANSIENT_ERRORS),
        "health_check_interval": 30,
        "socket_connect_timeout": 5,
        "socket_keepalive": True,
        # bytes that are not UTF-8 (a hash written by something else) decode to lone
        # surrogates instead of failing the whole reply: the job that holds them is failed as
        # corrupt (Job.from_hash) and the rest of the reply is read as usual
        "encoding_errors": "surrogateescape",
    }
    options.update(overrides)
    # a blocking pool: with more concurrent calls than connections, a call waits for a free
    # connection instead of failing with "Too many connections"
    pool = BlockingConnectionPool.from_url(
        connection or default_url(), max_connections=MAX_CONNECTIONS, timeout=30, **options
    )
    return Redis.from_pool(pool), True


PROBE_TIMEOUT = 5.0  # seconds a reachability probe may take to connect, and to get its reply


def probe_client(client: Redis) -> Redis:
    """A client to the server ``client`` talks to (same address, TLS, credentials, database and
    connect hook) for reachability probes: each call is one connection attempt and one command,
    as redis-py's retries are off for it (``client``'s own would make each probe of a dead
    server several connection attempts, each connect retried as well), bounded by
    ``PROBE_TIMEOUT``, on at most one connection."""
    pool = client.connection_pool
    kwargs = dict(pool.connection_kwargs)
    connect_timeout = kwargs.get("socket_connect_timeout") or PROBE_TIMEOUT
    kwargs.update(
        retry=Retry(NoBackoff(), 0),
        retry_on_error=[],
        retry_on_timeout=False,
        socket_timeout=PROBE_TIMEOUT,
        socket_connect_timeout=min(connect_timeout, PROBE_TIMEOUT),
        health_check_interval=0,
    )
    probe_pool = ConnectionPool(connection_class=pool.connection_class, max_connections=1, **kwargs)
    return Redis.from_pool(probe_pool)


TLS_QUERY_KEYS = (
    "ssl_ca_certs",
    "ssl_certfile",
    "ssl_keyfile",
    "ssl_cert_reqs",
    "ssl_check_hostname",
)
"""The redis-py connection arguments ``TlsOptions`` sets, as URL query arguments."""


@dataclass(frozen=True, slots=True)
class TlsOptions:
    """TLS settings from ``--tls-ca-cert``/``--tls-cert``/``--tls-key``/``--tls-insecure``.

    They become redis-py's ``ssl_ca_certs``, ``ssl_certfile`` and ``ssl_keyfile`` (certificate
    **and** host name verified unless ``insecure``), carried as query arguments of a
    ``rediss://`` URL, which redis-py hands to each connection it makes: every client built from
    the URL (a worker's second, blocking connection too) gets the same settings.
    """

    ca_cert: str | None = None
    """PEM file of the CA(s) that signed the server's certificate (default: the system's)."""
    cert: str | None = None
    """PEM client certificate, for servers that ask for one (mutual TLS)."""
    key: str | None = None
    """The client certificate's private key (if not in ``cert`` itself)."""
    insecure: bool = False
    """Check neither the server's certificate nor its host name (encrypted, not authenticated)."""

    def __post_init__(self) -> None:
        if self.key is not None and self.cert is None:
            raise ValueError("--tls-key needs --tls-cert (the certificate the key belongs to)")
        if self.insecure and self.ca_cert is not None:
            raise ValueError(
                "--tls-insecure and --tls-ca-cert contradict each other: a CA is only used to "
                "verify the server, which --tls-insecure turns off"
            )

    @classmethod
    def from_namespace(cls, args: object) -> TlsOptions:
        """The options of a parsed command line (``tls_ca_cert``, ``tls_cert``, ``tls_key``,
        ``tls_insecure``; each missing one is unset)."""
        return cls(
            ca_cert=getattr(args, "tls_ca_cert", None),
            cert=getattr(args, "tls_cert", None),
            key=getattr(args, "tls_key", None),
            insecure=bool(getattr(args, "tls_insecure", False)),
        )

    @property
    def given(self) -> bool:
        """True when any option is set."""
        return bool(self.ca_cert or self.cert or self.key or self.insecure)

    def client_kwargs(self) -> dict[str, Any]:
        """The redis-py connection arguments (``ssl_*``) these options stand for."""
        if self.insecure:  # redis-py turns the host name check off with the certificate's
            return {"ssl_cert_reqs": "none"}
        # redis-py 5 did not check host names by default: always ask for it
        kwargs: dict[str, Any] = {"ssl_cert_reqs": "required", "ssl_check_hostname": True}
        for name, path in (
            ("ssl_ca_certs", self.ca_cert),
            ("ssl_certfile", self.cert),
            ("ssl_keyfile", self.key),
        ):
            if path is not None:
                kwargs[name] = path
        return kwargs

    def apply(self, url: str) -> str:
        """``url`` carrying these options; ``url`` itself when none is set. ``ValueError``
        (naming the flag) for a URL that is not ``rediss://``, a file that cannot be read, or
        an option the URL already sets."""
        if not self.given:
            return url
        parts = urlsplit(url)
        if parts.scheme != "rediss":
            raise ValueError(
                f"the --tls-* options need a rediss:// URL (TLS), not {parts.scheme or 'no'}://"
            )
        for flag, path in (
            ("--tls-ca-cert", self.ca_cert),
            ("--tls-cert", self.cert),
            ("--tls-key", self.key),
        ):
            if path is not None and not os.access(path, os.R_OK):
                why = "no such file" if not os.path.exists(path) else "not readable"
                raise ValueError(f"{flag} {path}: {why}")
        query = parse_qsl(parts.query, keep_blank_values=True)
        both = sorted({name for name, _ in query} & set(TLS_QUERY_KEYS))
        if both:
            raise ValueError(f"the URL sets {', '.join(both)} and a --tls-* option does too")
        query += [(name, str(value)) for name, value in self.client_kwargs().items()]
        return urlunsplit(parts._replace(query=urlencode(query)))


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(".")[:3] if part.isdigit())


@dataclass(frozen=True, slots=True)
class ServerInfo:
    """What the engine checks about the server before it writes anything."""

    flavour: str
    version: tuple[int, ...]
    maxmemory_policy: str
    run_id: str


CLUSTER_REFUSAL = (
    "the server is a Redis Cluster node (cluster_enabled:1): Corral does not support Redis "
    "Cluster (flows, dead letters and other calls that span queues are one script over keys "
    "in different slots). Use a standalone server; for failover, give Corral an address that "
    "always leads to the primary (a proxy, or a DNS name or virtual IP that Sentinel moves)"
)


def cluster_refusal(info: Mapping[str, Any]) -> str | None:
    """Why Corral refuses the server whose ``INFO cluster`` (or whole ``INFO``) is ``info``,
    or None: a Redis Cluster node is refused."""
    if str(info.get("cluster_enabled", 0)).strip() not in ("", "0"):
        return CLUSTER_REFUSAL
    return None


async def check_server(client: Redis, *, allow_unsafe_eviction: bool = False) -> ServerInfo:
    """Refuse servers that are too old, are Redis Cluster nodes or may evict keys (two round
    trips: ``INFO server``, then ``INFO memory cluster``); return what was found."""
    server = await client.info("server")
    flavour = "valkey" if "valkey_version" in server else "redis"
    version = _version(str(server.get("valkey_version") or server.get("redis_version", "0")))
    minimum = MIN_VERSIONS[flavour]
    if version < minimum:
        raise UnsafeServerConfig(
            f"{flavour} {'.'.join(map(str, version))} is too old: Corral needs "
            f"{flavour} {'.'.join(map(str, minimum))} or newer (scripts use #!lua flags so a "
            "server out of memory refuses them before they start)"
        )
    memory = await client.info("memory", "cluster")  # several sections: 7.0 and newer
    refusal = cluster_refusal(memory)
    if refusal is not None:
        raise ClusterNotSupported(refusal)
    policy = str(memory.get("maxmemory_policy", SAFE_EVICTION_POLICY))
    if policy != SAFE_EVICTION_POLICY and not allow_unsafe_eviction:
        raise UnsafeServerConfig(
            f"maxmemory-policy is {policy!r}: the server may evict job keys and silently lose "
            "jobs. Only 'noeviction' is safe. Fix: CONFIG SET maxmemory-policy noeviction (and "
            "set it in redis.conf), or pass allow_unsafe_eviction=True (corral worker "
            "--allow-unsafe-eviction) if you accept the risk"
        )
    return ServerInfo(flavour, version, policy, str(server.get("run_id", "")))
