"""The engine's exceptions, and the map from script error codes to them."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from enum import IntEnum
from http import HTTPStatus
from typing import Any, Self, TypeVar


class EngineError(Exception):
    """Root of every error the engine raises on purpose."""


class InvalidJobOptions(EngineError, ValueError):
    """An option given to ``add``, a ``Worker`` or a ``Queue`` is out of range or mistyped."""


class InvalidJobData(EngineError, TypeError):
    """Job data (or a return value) cannot be stored as JSON, or does not match the schema
    registered for its job name; the message names the path, ``field`` holds it when known."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class PayloadTooLarge(EngineError, ValueError):
    """Serialized job data or return value is over the configured size limit."""


class JobNotFound(EngineError, KeyError):
    """No job with that id exists in the queue."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "job not found"


class JobStateError(EngineError):
    """A job is not in the state an operation needs (e.g. retrying a job that is not failed)."""

    def __init__(self, message: str, state: str | None = None) -> None:
        super().__init__(message)
        self.state = state


class JobNotActive(JobStateError):
    """The job is not active, so it cannot be completed, failed or retried by a worker."""


class LockLost(EngineError):
    """A worker tried to change a job whose lock it no longer holds (token missing or different)."""


class UnsafeServerConfig(EngineError):
    """The Redis server is too old or configured so that it may silently drop jobs."""


class ClusterNotSupported(UnsafeServerConfig):
    """The server is a Redis Cluster node (``cluster_enabled:1``), which Corral refuses: keys
    of different queues are in different slots, and some scripts span queues."""


class DurabilityNotConfirmed(EngineError):
    """An add with ``durable=True`` was stored, but the server did not confirm within the
    timeout that it fsynced it to its append-only file (``WAITAOF``), or cannot (AOF off).

    The jobs *were* added: ``jobs`` holds them, so the caller can decide to keep, re-check or
    remove them. They survive a server crash only if the fsync happens after all.
    """

    def __init__(self, message: str, jobs: list[Any]) -> None:
        super().__init__(message)
        self.jobs = jobs


class ServerUnavailable(EngineError):
    """The Redis server could not be reached."""


class ProcessorExited(EngineError):
    """A sandboxed processor's process died while running the job (a crash, ``os._exit``, a
    signal); the job fails with this and is retried by its policy."""


class SandboxStartError(EngineError):
    """A sandbox child process could not start or import the processor."""


class UnrecoverableError(Exception):
    """Raise from a processor to fail the job at once, without the remaining attempts."""


class Retry(Exception):
    """Raise from a processor to retry the job after ``delay`` ms (counts as an attempt)."""

    def __init__(self, delay: int = 0, reason: str = "retry requested") -> None:
        super().__init__(reason)
        if not isinstance(delay, int) or isinstance(delay, bool) or delay < 0:
            raise InvalidJobOptions(f"Retry(delay={delay!r}): expected an int >= 0 (ms)")
        self.delay = delay


class RateLimitError(Exception):
    """Raise from a processor (after ``await worker.rate_limit(ms)``) to put the job back at
    the front of wait: it neither fails nor uses an attempt, and no worker takes jobs until the
    rate limit ends."""

    def __init__(self, reason: str = "rate limited") -> None:
        super().__init__(reason)


class DelayedError(Exception):
    """Raise from a processor after ``await job.move_to_delayed(...)``: the job is delayed,
    not completed or failed, and no attempt is used."""

    def __init__(self, reason: str = "moved to delayed") -> None:
        super().__init__(reason)


_R = TypeVar("_R")


class HttpError(Exception):
    """Raise from a processor when an HTTP call failed: ``HttpError(status, message,
    retry_after=)``, or ``HttpError.from_response(response)`` /
    ``HttpError.raise_for_status(response)`` with the response of httpx, requests, aiohttp or
    urllib. 4xx fails at once (a retry would get the same answer), except 408 and 429; 429, 408
    and 5xx are retried, after ``retry_after`` when the response carried one (seconds, or the
    Retry-After header's text: delta-seconds or an HTTP date), else after the usual backoff."""

    def __init__(
        self, status: int, message: str = "", *, retry_after: float | str | None = None
    ) -> None:
        if not isinstance(status, int) or isinstance(status, bool) or not 100 <= status <= 599:
            raise InvalidJobOptions(f"HttpError(status={status!r}): expected an int 100-599")
        if not message:
            with contextlib.suppress(ValueError):
                message = HTTPStatus(status).phrase
        super().__init__(f"{status} {message}".rstrip())
        self.status = int(status)
        self.reason = message
        self.retry_after_ms = parse_retry_after(retry_after)

    @classmethod
    def from_response(cls, response: object, message: str | None = None) -> Self:
        """The error for an HTTP ``response``, read by duck typing so no client library is
        needed here: the status from ``status_code`` (httpx, requests) or ``status``
        (aiohttp, urllib); the reason phrase from ``reason_phrase`` or ``reason`` unless
        ``message`` is given; the delay from the ``Retry-After`` header of ``headers``
        (delta-seconds or an HTTP date). The URL is left out: query strings carry tokens."""
        status = _response_status(response)
        if message is None:
            reason = getattr(response, "reason_phrase", None) or getattr(response, "reason", None)
            message = reason.strip() if isinstance(reason, str) else ""
        retry_after = _header(getattr(response, "headers", None), "Retry-After")
        return cls(status, message, retry_after=retry_after)

    @classmethod
    def raise_for_status(cls, response: _R) -> _R:
        """Raise ``from_response(response)`` if its status is 400 or more; else return it,
        so that ``HttpError.raise_for_status(await client.get(url)).json()`` reads on."""
        if _response_status(response) >= 400:
            raise cls.from_response(response)
        return response

    @property
    def retryable(self) -> bool:
        """False for client errors (4xx) other than 408 Request Timeout and 429 Too Many."""
        return not (400 <= self.status < 500) or self.status in (408, 429)

    def __reduce__(self) -> tuple[Any, ...]:
        # pickled when a sandboxed processor raises it: rebuilt as it is (status, reason and a
        # Retry-After already in ms), since calling __init__ with ``args`` would not fit
        return (_bare_exception, (type(self), self.args), self.__dict__)


def _bare_exception(cls: type[BaseException], args: tuple[Any, ...]) -> BaseException:
    """An instance of ``cls`` with ``args``, made without calling its ``__init__``."""
    return cls.__new__(cls, *args)


def _response_status(response: object) -> int:
    """The int status of an HTTP response of any of the common clients."""
    for attribute in ("status_code", "status"):
        status = getattr(response, attribute, None)
        if isinstance(status, int) and not isinstance(status, bool):
            return int(status)
    raise InvalidJobOptions(
        f"HttpError.from_response({type(response).__name__}): expected an HTTP response with "
        "an int status_code (httpx, requests) or status (aiohttp, urllib)"
    )


def _header(headers: Any, name: str) -> str | None:
    """Header ``name`` of a response's headers, whatever mapping holds them (the clients' own
    are case-insensitive; a plain dict is searched case-insensitively too)."""
    if headers is None:
        return None
    value: Any = None
    with contextlib.suppress(Exception):
        value = headers.get(name)
    if value is None and callable(getattr(headers, "items", None)):
        wanted = name.lower()
        for key, item in headers.items():
            if isinstance(key, str | bytes) and _text(key).lower() == wanted:
                value = item
                break
    return _text(value) if isinstance(value, str | bytes | int | float) else None


def _text(value: str | bytes | float) -> str:
    """A header name or value as text (HTTP headers are Latin-1 when they come as bytes)."""
    return value.decode("latin-1") if isinstance(value, bytes) else str(value)


def parse_retry_after(value: float | str | None) -> int | None:
    """A Retry-After value in ms: seconds as a number or text, or an HTTP date (measured from
    this host's clock). None when absent or unreadable, so a bad header never hides the error."""
    if value is None or isinstance(value, bool):
        return None
    seconds: float | None = None
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip()
        try:
            seconds = float(text)
        except ValueError:
            with contextlib.suppress(TypeError, ValueError, IndexError, OverflowError):
                when = parsedate_to_datetime(text)
                if when.tzinfo is None:
                    when = when.replace(tzinfo=UTC)
                seconds = (when - datetime.now(UTC)).total_seconds()
    if seconds is None or seconds != seconds:  # NaN
        return None
    return int(min(max(seconds, 0.0), 10 * 365 * 86_400) * 1000)


def format_seconds(ms: int) -> str:
    """``30000`` -> ``"30 s"``, ``1500`` -> ``"1.5 s"``: durations in failure reasons."""
    return f"{ms / 1000:g} s"


class JobTimeout(EngineError, TimeoutError):
    """An attempt ran past its ``timeout_ms``: the failure recorded for it (reason
    "timed out after 30 s"). It is retried like any failure unless a policy says otherwise."""

    @classmethod
    def after(cls, timeout_ms: int) -> JobTimeout:
        """The timeout of an attempt that was given ``timeout_ms``."""
        return cls(f"timed out after {format_seconds(timeout_ms)}")


class JobCancelled(asyncio.CancelledError):
    """A cancel was requested for the job (reason "cancelled by <who>"); it is never retried.

    ``job.raise_if_cancelled()`` raises it in a ``def`` processor; an ``async def`` processor
    sees an ``asyncio.CancelledError`` carrying the same message at its next await (this class
    derives from it, so one ``except asyncio.CancelledError`` handles both).
    """


class ScriptError(IntEnum):
    """Negative codes returned by the Lua scripts (see each script's header)."""

    JOB_NOT_FOUND = -1
    LOCK_MISSING = -2
    NOT_IN_STATE = -3
    LOCK_MISMATCH = -6
    JOB_LOCKED = -8
    ID_TAKEN = -7
    FLOW_JOB = -10
    QUEUE_NOT_PASSED = -11
    TOO_MANY = -12
