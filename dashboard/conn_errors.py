"""One short, specific line for each way a connection to the server fails.

"authentication failed", "authentication required", "NOPERM: may not run 'info'",
"connection refused", "timeout" …, redacted, so the status bar says what is wrong without a
traceback and never shows a password.
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
        lowered = message.lower()
        if "refused" in lowered or "error 111 " in lowered or "connect call failed" in lowered:
            return "connection refused"
        if "name or service not known" in lowered or "nodename nor servname" in lowered:
            return "unknown host"
        if "closed by server" in lowered or "reset" in lowered:
            return "connection closed by the server"
    return f"{type(exc).__name__}: {redact_string(message) or 'no message'}"
