"""One short, specific line for each way a connection to the server fails.

"authentication failed", "authentication required", "NOPERM: may not run 'info'",
"connection refused", "timeout", "TLS certificate verify failed: unknown CA", "the server is a
read-only replica" …, redacted, so the status bar says what is wrong without a traceback and
never shows a password.
"""

from __future__ import annotations

import asyncio
import re

from redis.asyncio.connection import AbstractConnection as AsyncAbstractConnection
from redis.asyncio.connection import SSLConnection as AsyncSSLConnection
from redis.connection import AbstractConnection, SSLConnection
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


def describe_error(exc: BaseException) -> str:
    """What went wrong, in a few words an operator can act on."""
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
    if (mixup := describe_tls_mixup(exc)) is not None:  # before the generic timeout/reset
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
_HANDSHAKE_FRAMES = frozenset({"_create_connection_transport", "do_handshake"})
"""Where a client waits for the server's side of the TLS handshake, the TCP connection made
(asyncio's transport set-up; ``ssl``'s handshake for the synchronous client)."""


def describe_tls_mixup(exc: BaseException) -> str | None:
    """A plaintext client on a TLS port, a TLS client on a plaintext port, or a client without
    the certificate the server asks for (None: none of these). Told from what the client saw:
    a TLS server resets a plaintext connection at its first command; a plaintext server takes
    the TLS hello as the start of a command line and never answers it; a server that needs a
    client certificate says so in its alert, or resets the connection once the handshake is
    done."""
    if "CERTIFICATE_REQUIRED" in str(exc):
        return CLIENT_CERT_REQUIRED
    tls, connecting, names = _trace(exc)
    if tls is None or not connecting:
        return None
    reset = any(isinstance(link, ConnectionResetError) for link in _chain(exc))
    if reset and not tls:
        return PLAINTEXT_ON_TLS
    if reset and not names & _HANDSHAKE_FRAMES:  # on its first command, the handshake done
        return RESET_AFTER_HANDSHAKE
    timed_out = isinstance(exc, RedisTimeoutError | TimeoutError)
    if tls and timed_out and names & _HANDSHAKE_FRAMES:
        return TLS_ON_PLAINTEXT
    return None


def _chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and the exceptions it was raised from or while handling."""
    found: list[BaseException] = []
    link: BaseException | None = exc
    while link is not None and len(found) < 8:
        found.append(link)
        link = link.__cause__ or link.__context__
    return found


def _trace(exc: BaseException) -> tuple[bool | None, bool, set[str]]:
    """Whether the failing connection used TLS (None: no redis-py connection in the trace),
    whether it failed while connecting, and the names of every frame in the traces."""
    tls: bool | None = None
    connecting = False
    names: set[str] = set()
    for link in _chain(exc):
        tb = link.__traceback__
        while tb is not None:
            code = tb.tb_frame.f_code.co_name
            names.add(code)
            owner = tb.tb_frame.f_locals.get("self")
            if isinstance(owner, AbstractConnection | AsyncAbstractConnection):
                tls = isinstance(owner, SSLConnection | AsyncSSLConnection)
                connecting = connecting or code == "connect"
            tb = tb.tb_next
    return tls, connecting, names
