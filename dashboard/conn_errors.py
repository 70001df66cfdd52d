"""One short, specific line for each way a connection to the server fails.

"authentication failed", "authentication required", "NOPERM: may not run 'info'",
"connection refused", "timeout", "TLS certificate verify failed: unknown CA" …, redacted, so the
status bar says what is wrong without a traceback and never shows a password.
"""

from __future__ import annotations

import asyncio
import re

from redis.exceptions import (
    AuthenticationError,
    BusyLoadingError,
    NoPermissionError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from dashboard.sanitize import redact_string

_COMMAND = re.compile(r"to run the '([^']{1,60})' command")
_VERIFY = re.compile(r"certificate verify failed(?:: ([^(]{1,120}?)\.? \(_ssl)?")
_SSL = re.compile(r"\[SSL(?:: ([A-Z0-9_]{1,60}))?\] ([^(]{1,120}?)\.? \(_ssl")
TLS_UNKNOWN_CA = ("unable to get local issuer certificate", "self-signed", "self signed")


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
