"""Error policies: which failures are retried and which fail at once, and the backoff per
error class. A worker has one for its queue and may have one per job name (which wins).

How a failed attempt is decided, first rule that applies:

1. ``JobCancelled``, ``UnrecoverableError``, ``InvalidJobData``, ``PayloadTooLarge``: fail now.
2. The error is an instance of a class in ``fail_on``: fail now.
3. ``Retry(delay)`` from the processor: retry after ``delay`` (if attempts remain).
4. ``retry_on`` is set and the error is an instance of none of its classes: fail now.
5. ``HttpError``: 4xx other than 408/429 fails now; else retry, after its Retry-After if any.
6. Otherwise retry while attempts remain, after the backoff: the policy's backoff for the
   error's class (the most specific one listed), else the job's ``backoff``, else the worker's.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import (
    HttpError,
    InvalidJobData,
    InvalidJobOptions,
    JobCancelled,
    PayloadTooLarge,
    Retry,
    UnrecoverableError,
)
from .options import Backoff

ErrorClasses = tuple[type[BaseException], ...]

ALWAYS_FINAL: ErrorClasses = (JobCancelled, UnrecoverableError, InvalidJobData, PayloadTooLarge)


def _classes(name: str, value: object) -> ErrorClasses:
    items = (value,) if isinstance(value, type) else value
    if not isinstance(items, Iterable) or isinstance(items, str | bytes):
        raise InvalidJobOptions(f"{name}={value!r} is invalid: expected exception classes")
    out = tuple(items)
    for item in out:
        if not (isinstance(item, type) and issubclass(item, BaseException)):
            raise InvalidJobOptions(
                f"{name} has {item!r}, which is not an exception class (e.g. ConnectionError)"
            )
    return out


@dataclass(frozen=True, slots=True)
class ErrorPolicy:
    """``ErrorPolicy(retry_on=(ConnectionError,), fail_on=(KeyError,),
    backoff={TimeoutError: Backoff.exponential(5_000)})``. Classes match subclasses too. An
    empty ``retry_on`` retries everything."""

    retry_on: ErrorClasses = ()
    fail_on: ErrorClasses = ()
    backoff: Mapping[type[BaseException], Backoff] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "retry_on", _classes("retry_on", self.retry_on))
        object.__setattr__(self, "fail_on", _classes("fail_on", self.fail_on))
        if not isinstance(self.backoff, Mapping):
            raise InvalidJobOptions(
                f"backoff={self.backoff!r} is invalid: expected {{ErrorClass: Backoff}}"
            )
        _classes("backoff", tuple(self.backoff))
        for cls, backoff in self.backoff.items():
            if not isinstance(backoff, Backoff):
                raise InvalidJobOptions(
                    f"backoff[{cls.__name__}]={backoff!r} is invalid: expected a Backoff"
                )
        object.__setattr__(self, "backoff", dict(self.backoff))

    def over(self, base: ErrorPolicy | None) -> ErrorPolicy:
        """This policy, with ``base`` filling in what it leaves unset (a job name's policy over
        its queue's): ``retry_on``/``fail_on`` are taken whole when set; backoffs merge."""
        if base is None:
            return self
        return ErrorPolicy(
            retry_on=self.retry_on or base.retry_on,
            fail_on=self.fail_on or base.fail_on,
            backoff={**base.backoff, **self.backoff},
        )

    def backoff_for(self, exc: BaseException) -> Backoff | None:
        """The backoff listed for the most specific class of ``exc``, if any."""
        for cls in type(exc).__mro__:
            if cls in self.backoff:
                return self.backoff[cls]
        return None


def retry_delay(
    exc: BaseException,
    *,
    attempts_made: int,
    attempts: int,
    opts: Mapping[str, Any],
    policy: ErrorPolicy | None,
    default_backoff: Backoff | None,
) -> int:
    """The delay in ms before the next attempt after ``exc`` ended attempt
    ``attempts_made + 1`` of ``attempts``, or -1 to fail the job for good."""
    policy = policy or ErrorPolicy()
    attempts_after = attempts_made + 1
    if isinstance(exc, ALWAYS_FINAL + policy.fail_on):
        return -1
    explicit: int | None = None
    if isinstance(exc, Retry):
        explicit = exc.delay
    elif policy.retry_on and not isinstance(exc, policy.retry_on):
        return -1
    elif isinstance(exc, HttpError):
        if not exc.retryable:
            return -1
        explicit = exc.retry_after_ms
    if attempts_after >= attempts:
        return -1
    if explicit is not None:
        return explicit
    backoff = policy.backoff_for(exc) or Backoff.from_json(opts.get("backoff")) or default_backoff
    return backoff.delay_for(attempts_after, exc) if backoff else 0
