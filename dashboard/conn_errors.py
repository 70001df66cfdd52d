"""One short, specific line for each way a connection to the server fails.

"authentication failed", "authentication required", "NOPERM: may not run 'info'",
"connection refused", "timeout", "TLS certificate verify failed: unknown CA", "the server is a
read-only replica" …, redacted, so the status bar says what is wrong without a traceback and
never shows a password. A plaintext/TLS mix-up is named from facts the caller gives, never from
the traceback: the URL's scheme, and the stage of connecting that failed, which the connect hook
``greet`` and the explicit ``connect`` note on the exception.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from urllib.parse import urlsplit

from redis.asyncio import Redis
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import (
    AuthenticationError,
    BusyLoadingError,
    NoPermissionError,
    ReadOnlyError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from dashboard.sanitize import redact_string

_COMMAND = re.compile(r"to run the '([^']{1,60})' command")
_VERIFY = re.compile(r"certificate verify failed(?:: ([^(]{1,120}?)\.? \(_ssl)?")
_SSL = re.compile(r"\[SSL(?:: ([A-Z0-9_]{1,60}))?\] ([^(]{1,120}?)\.? \(_ssl")
TLS_UNKNOWN_CA = ("unable to get local issuer certificate", "self-signed", "self signed")
READ_ONLY_REPLICA = "the server is a read-only replica; point the dashboard at the primary"
"""Why a write was refused (``READONLY``), or is not tried: what a replica holds comes from its
primary, and only the primary takes writes."""


def describe_tls(message: str) -> str | None:
    """A certificate or handshake failure in a few words (None: not a TLS failure)."""
    verify = _VERIFY.search(message)
    if verify is not None:
        reason = (verify.group(1) or "").strip()
        if any(marker in reason for marker in TLS_UNKNOWN_CA):
            reason = "unknown CA (give it with --tls-ca-cert)"
        elif "expired" in reason:
            reason = "the server's certificate has expired"
        elif "mismatch" in reason:
            reason = "the certificate is not for this host name"
        return "TLS certificate verify failed: " + (reason or "no reason given")
    handshake = _SSL.search(message)
    if handshake is None:
        return None
    if handshake.group(1) in {"WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE"}:
        return "TLS handshake failed: no TLS on this port (try redis://)"
    if "ALERT" in (handshake.group(1) or ""):  # the server refused us, e.g. our client certificate
        return "TLS handshake refused by the server: " + handshake.group(2).strip()
    return "TLS handshake failed: " + handshake.group(2).strip()


def describe_error(exc: BaseException, *, url: str | None = None) -> str:
    """What went wrong, in a few words an operator can act on; ``url``, the one the failing
    client was built from, lets a plaintext/TLS mix-up be named (``describe_tls_mixup``)."""
    message = str(exc)
    if isinstance(exc, AuthenticationError):
        lowered = message.lower()
        if "noauth" in lowered or "required" in lowered or "already authenticated" in lowered:
            return "authentication required (no password given)"
        return "authentication failed (wrong user or password)"
    if isinstance(exc, NoPermissionError):
        command = _COMMAND.search(message)
        if command:
            return f"NOPERM: may not run '{command.group(1)}'"
        if "keys" in message:
            return "NOPERM: may not read the queue keys"
        if "channel" in message:
            return "NOPERM: may not subscribe to notifications"
        return "NOPERM: " + redact_string(message)
    if isinstance(exc, ReadOnlyError):
        return READ_ONLY_REPLICA
    if (mixup := describe_tls_mixup(exc, url)) is not None:  # before the generic timeout/reset
        return mixup
    if isinstance(exc, RedisTimeoutError | asyncio.TimeoutError | TimeoutError):
        return "timeout (no answer from the server)"
    if isinstance(exc, BusyLoadingError):
        return "server loading its data"
    if isinstance(exc, RedisConnectionError | OSError):
        found = describe_tls(message) or _describe_socket(message.lower())
        if found is not None:
            return found
    return f"{type(exc).__name__}: {redact_string(message) or 'no message'}"


def _describe_socket(lowered: str) -> str | None:
    if "refused" in lowered or "error 111 " in lowered or "connect call failed" in lowered:
        return "connection refused"
    if "name or service not known" in lowered or "nodename nor servname" in lowered:
        return "unknown host"
    if "closed by server" in lowered or "reset" in lowered:
        return "connection closed by the server"
    return None


# -- TLS where there is none, none where TLS is needed, a missing client certificate ----------

CLIENT_CERT_REQUIRED = "TLS handshake refused: the server wants a client certificate (--tls-cert)"
PLAINTEXT_ON_TLS = "connection reset by the server while connecting (a TLS port? try rediss://)"
TLS_ON_PLAINTEXT = "timeout: no answer to the TLS handshake (no TLS on this port? try redis://)"
RESET_AFTER_HANDSHAKE = "reset after the TLS handshake (a client certificate needed? --tls-cert)"
"""TLS 1.3: the client's handshake ends before the server has checked the client's
certificate, and the server's alert can be lost to the reset that follows it."""

GREETING = "corral: failed in the commands a new connection starts with (AUTH, HELLO, SELECT)"
"""The note ``greet`` puts on a failure after the socket, and any TLS handshake, were made."""
PORT_OPEN = "corral: the TLS socket timed out, but the port took a plain TCP connection"
"""The note ``connect`` puts on a TLS connect that timed out before ``greet`` ran, when the port
takes TCP connections: the TLS handshake got no answer (a host that does not answer at all, or
not in time, gets no such note)."""
PROBE_TIMEOUT_S = 1.0
"""How long ``connect`` waits for that one plain TCP connection."""


async def greet(connection: AbstractConnection) -> None:
    """redis-py's connect hook (``redis_connect_func``): what redis-py runs on a new
    connection once its socket, and any TLS handshake, are made (``on_connect``: AUTH, HELLO,
    SELECT); a failure there is noted ``GREETING``."""
    try:
        await connection.on_connect()
    except Exception as exc:
        exc.add_note(GREETING)
        raise


async def connect(client: Redis, url: str) -> None:
    """Make the first connection of ``client`` (built from ``url``, with ``greet`` as its
    connect hook) now, so that a failure is known to be one of connecting. A TLS connect that
    timed out before ``greet`` ran (the TCP connection or the TLS handshake: redis-py makes both
    under one timeout and says the same of either) is noted ``PORT_OPEN`` when one plain TCP
    connection to the same port then succeeds within ``PROBE_TIMEOUT_S``. The connection made
    stays in the pool."""
    pool = client.connection_pool
    try:
        connection = await pool.get_connection()  # type: ignore[no-untyped-call]
    except Exception as exc:
        tls_timeout = _uses_tls(url) and _timed_out(exc) and GREETING not in _notes(exc)
        if tls_timeout and await _takes_tcp(url):
            exc.add_note(PORT_OPEN)
        raise
    await pool.release(connection)


def describe_tls_mixup(exc: BaseException, url: str | None = None) -> str | None:
    """A plaintext client on a TLS port, a TLS client on a plaintext port, or a client without
    the certificate the server asks for (None: none of these, or ``url`` not given).

    Told from the server's alert where it came, else from facts the caller gives: the scheme of
    ``url`` (rediss://: the client used TLS) and the stage of connecting that failed, noted on
    ``exc`` by ``greet`` and ``connect``. A TLS server resets a plaintext connection at its first
    command; a server that needs a client certificate says so in its alert, or resets the
    connection once the handshake is done; a plaintext server takes the TLS hello as the start
    of a command line and never answers it, while the port takes TCP connections."""
    if "CERTIFICATE_REQUIRED" in str(exc):
        return CLIENT_CERT_REQUIRED
    if url is None:
        return None
    tls = _uses_tls(url)
    notes = _notes(exc)
    if GREETING in notes and any(isinstance(link, ConnectionResetError) for link in _chain(exc)):
        return RESET_AFTER_HANDSHAKE if tls else PLAINTEXT_ON_TLS
    if tls and PORT_OPEN in notes:
        return TLS_ON_PLAINTEXT
    return None


def _notes(exc: BaseException) -> list[str]:
    return getattr(exc, "__notes__", [])


def _uses_tls(url: str) -> bool:
    return urlsplit(url).scheme == "rediss"


def _timed_out(exc: BaseException) -> bool:
    return isinstance(exc, RedisTimeoutError | TimeoutError)


async def _takes_tcp(url: str) -> bool:
    """Whether the host and port of ``url`` take a plain TCP connection within
    ``PROBE_TIMEOUT_S`` (closed at once, before a byte is sent)."""
    parts = urlsplit(url)
    try:
        async with asyncio.timeout(PROBE_TIMEOUT_S):
            _, writer = await asyncio.open_connection(
                parts.hostname or "localhost", parts.port or 6379
            )
    except (OSError, TimeoutError, ValueError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


def _chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and the exceptions it was raised from or while handling."""
    found: list[BaseException] = []
    link: BaseException | None = exc
    while link is not None and len(found) < 8:
        found.append(link)
        link = link.__cause__ or link.__context__
    return found
