"""The engine's exceptions, and the map from script error codes to them."""

from __future__ import annotations

from enum import IntEnum


class EngineError(Exception):
    """Root of every error the engine raises on purpose."""


class InvalidJobOptions(EngineError, ValueError):
    """An option given to ``add``, a ``Worker`` or a ``Queue`` is out of range or mistyped."""


class InvalidJobData(EngineError, TypeError):
    """Job data (or a return value) cannot be stored as JSON; the message names the path."""


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


class ScriptError(IntEnum):
    """Negative codes returned by the Lua scripts (see each script's header)."""

    JOB_NOT_FOUND = -1
    LOCK_MISSING = -2
    NOT_IN_STATE = -3
    LOCK_MISMATCH = -6
    JOB_LOCKED = -8
