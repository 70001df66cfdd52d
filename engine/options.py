"""Job options (``JobOptions``, ``Backoff``, retention) that validate themselves on creation."""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .deduplication import Deduplication
from .errors import InvalidJobOptions
from .keys import validate_queue_name

MAX_PRIORITY = 2**21  # priority * 2^32 + sequence must stay exact in a double-precision score
MAX_DELAY_MS = 10 * 365 * 86_400_000
MAX_ATTEMPTS = 1_000_000
MAX_TIMEOUT_MS = 7 * 86_400_000  # a week: anything longer is a missing timeout, not a timeout
_JOB_ID = re.compile(r"^[^\x00-\x1f\x7f:{}\s][^\x00-\x1f\x7f:{}]{0,255}$")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _require_int(name: str, value: object, low: int, high: int) -> int:
    if not _is_int(value) or not low <= value <= high:  # type: ignore[operator]
        raise InvalidJobOptions(
            f"{name}={value!r} is invalid: expected an integer from {low} to {high}"
        )
    return value  # type: ignore[return-value]


def validate_job_id(job_id: object) -> str:
    """Return ``job_id`` if it can be a custom job id, else raise saying why."""
    if not isinstance(job_id, str) or not _JOB_ID.match(job_id) or job_id != job_id.strip():
        raise InvalidJobOptions(
            f"job_id={job_id!r} is invalid: expected 1-256 characters without ':', braces, "
            "control characters or leading/trailing spaces"
        )
    if job_id == "*":
        raise InvalidJobOptions(
            "job_id='*' is invalid: '*' is reserved (promote_job takes it to mean every "
            "delayed job)"
        )
    if job_id.startswith("repeat-"):
        raise InvalidJobOptions(
            f"job_id={job_id!r} is invalid: ids starting with 'repeat-' are reserved for the "
            "jobs of job schedulers"
        )
    if job_id.isdigit():
        raise InvalidJobOptions(
            f"job_id={job_id!r} is invalid: custom ids cannot be plain integers, which are "
            "reserved for automatic ids"
        )
    return job_id


@dataclass(frozen=True, slots=True)
class Backoff:
    """How long to wait before a retry. Build with ``fixed``, ``exponential`` or ``custom``."""

    kind: str
    delay: int = 0
    jitter: float = 0.0
    function: Callable[[int, BaseException | None], int] | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if self.kind not in ("fixed", "exponential", "custom"):
            raise InvalidJobOptions(
                f"backoff kind {self.kind!r} is invalid: expected fixed, exponential or custom"
            )
        _require_int("backoff delay", self.delay, 0, MAX_DELAY_MS)
        if not isinstance(self.jitter, int | float) or not 0.0 <= self.jitter <= 1.0:
            raise InvalidJobOptions(
                f"backoff jitter={self.jitter!r} is invalid: expected a number from 0 to 1"
            )
        if self.kind == "custom" and not callable(self.function):
            raise InvalidJobOptions("custom backoff needs a function(attempts_made, error) -> ms")

    @classmethod
    def fixed(cls, delay_ms: int, jitter: float = 0.0) -> Backoff:
        """Wait ``delay_ms`` before every retry."""
        return cls("fixed", delay_ms, jitter)

    @classmethod
    def exponential(cls, delay_ms: int, jitter: float = 0.0) -> Backoff:
        """Wait ``delay_ms * 2^(n-1)`` before retry n; ``jitter`` takes up to that share off."""
        return cls("exponential", delay_ms, jitter)

    @classmethod
    def custom(cls, function: Callable[[int, BaseException | None], int]) -> Backoff:
        """Ask ``function(attempts_made, error)`` for the delay in ms (workers only)."""
        return cls("custom", 0, 0.0, function)

    def delay_for(self, attempts_made: int, error: BaseException | None = None) -> int:
        """Delay in ms before the next attempt, after ``attempts_made`` attempts have failed."""
        if self.kind == "custom":
            assert self.function is not None
            return max(0, int(self.function(attempts_made, error)))
        base = self.delay if self.kind == "fixed" else self.delay * 2 ** max(attempts_made - 1, 0)
        base = min(base, MAX_DELAY_MS)
        if self.jitter:
            base = int(base * (1 - self.jitter * random.random()))
        return base

    def to_json(self) -> dict[str, Any]:
        """The form stored in the job's opts (a custom function is named, not stored)."""
        if self.kind == "custom":
            return {"type": "custom"}
        return {"type": self.kind, "delay": self.delay, "jitter": self.jitter}

    @classmethod
    def from_json(cls, raw: Any) -> Backoff | None:
        """Read the stored form back; a custom backoff comes back as None (the worker's wins)."""
        if not isinstance(raw, dict) or raw.get("type") not in ("fixed", "exponential"):
            return None
        return cls(raw["type"], int(raw.get("delay", 0)), float(raw.get("jitter", 0.0)))


@dataclass(frozen=True, slots=True)
class Retention:
    """Which finished jobs to keep: the ``count`` newest (-1 = all), none older than ``age_ms``."""

    count: int = -1
    age_ms: int = 0

    @classmethod
    def parse(cls, name: str, value: object) -> Retention:
        """Accept True (remove at once), False (keep all), N (keep N) or {"count", "age"} (s)."""
        if value is True:
            return cls(0, 0)
        if value is False or value is None:
            return cls(-1, 0)
        if _is_int(value):
            return cls(_require_int(name, value, 0, 2**31), 0)
        if isinstance(value, Mapping):
            unknown = set(value) - {"count", "age"}
            if unknown:
                raise InvalidJobOptions(
                    f"{name} has unknown keys {sorted(unknown)}: expected 'count' and/or 'age'"
                )
            count = _require_int(f"{name}['count']", value.get("count", -1), -1, 2**31)
            age = _require_int(f"{name}['age']", value.get("age", 0), 0, 100 * 365 * 86_400)
            return cls(count, age * 1000)
        raise InvalidJobOptions(
            f"{name}={value!r} is invalid: expected True, False, a count, or "
            "{'count': N, 'age': seconds}"
        )


@dataclass(frozen=True, slots=True)
class JobOptions:
    """Options of one job, checked on creation; errors name the option and the allowed range."""

    attempts: int = 1
    backoff: Backoff | None = None
    delay: int = 0
    priority: int = 0
    lifo: bool = False
    job_id: str | None = None
    remove_on_complete: Retention = field(default_factory=Retention)
    remove_on_fail: Retention = field(default_factory=Retention)
    deduplication: Deduplication | None = None
    timeout_ms: int | None = None
    dead_letter: str | None = None

    def __post_init__(self) -> None:
        _require_int("attempts", self.attempts, 1, MAX_ATTEMPTS)
        if self.timeout_ms is not None:
            validate_timeout("timeout_ms", self.timeout_ms)
        if self.dead_letter is not None:
            validate_dead_letter(self.dead_letter)
        _require_int("delay", self.delay, 0, MAX_DELAY_MS)
        _require_int("priority", self.priority, 0, MAX_PRIORITY)
        if not isinstance(self.lifo, bool):
            raise InvalidJobOptions(f"lifo={self.lifo!r} is invalid: expected True or False")
        if self.lifo and self.priority:
            raise InvalidJobOptions("lifo=True cannot be combined with a priority")
        if self.backoff is not None and not isinstance(self.backoff, Backoff):
            raise InvalidJobOptions(
                f"backoff={self.backoff!r} is invalid: expected Backoff.fixed(...), "
                "Backoff.exponential(...) or Backoff.custom(...)"
            )
        if self.job_id is not None:
            validate_job_id(self.job_id)
        if self.deduplication is not None and not isinstance(self.deduplication, Deduplication):
            raise InvalidJobOptions(
                f"deduplication={self.deduplication!r} is invalid: expected a dict or a "
                "Deduplication"
            )

    @classmethod
    def build(cls, **options: Any) -> JobOptions:
        """Build from keyword options as ``Queue.add`` takes them; unknown names are an error."""
        unknown = set(options) - _OPTION_NAMES
        if unknown:
            raise InvalidJobOptions(
                f"unknown job option(s) {sorted(unknown)}: expected some of {sorted(_OPTION_NAMES)}"
            )
        for name in ("remove_on_complete", "remove_on_fail"):
            if name in options and not isinstance(options[name], Retention):
                options[name] = Retention.parse(name, options[name])
        if options.get("deduplication") is not None:
            options["deduplication"] = Deduplication.parse(options["deduplication"])
        return cls(**options)

    def to_json(self) -> dict[str, Any]:
        """The opts stored in the job hash (read back by workers and the dashboard)."""
        out: dict[str, Any] = {"attempts": self.attempts}
        if self.backoff is not None:
            out["backoff"] = self.backoff.to_json()
        if self.delay:
            out["delay"] = self.delay
        if self.priority:
            out["priority"] = self.priority
        if self.lifo:
            out["lifo"] = True
        if self.job_id is not None:
            out["job_id"] = self.job_id
        out["remove_on_complete"] = {
            "count": self.remove_on_complete.count,
            "age_ms": self.remove_on_complete.age_ms,
        }
        out["remove_on_fail"] = {
            "count": self.remove_on_fail.count,
            "age_ms": self.remove_on_fail.age_ms,
        }
        if self.deduplication is not None:
            out["deduplication"] = self.deduplication.to_json()
        if self.timeout_ms is not None:
            out["timeout_ms"] = self.timeout_ms
        if self.dead_letter is not None:
            out["dead_letter"] = self.dead_letter
        return out


_OPTION_NAMES = frozenset(
    {
        "attempts",
        "backoff",
        "delay",
        "priority",
        "lifo",
        "job_id",
        "remove_on_complete",
        "remove_on_fail",
        "deduplication",
        "timeout_ms",
        "dead_letter",
    }
)


def validate_dead_letter(name: object, own_queue: str | None = None) -> str:
    """A dead-letter queue's name: a valid queue name, not the job's own queue."""
    try:
        validate_queue_name(name)
    except ValueError as exc:
        raise InvalidJobOptions(f"dead_letter: {exc}") from None
    if name == own_queue:
        raise InvalidJobOptions(
            f"dead_letter={name!r} is invalid: a queue cannot be its own dead-letter queue"
        )
    return str(name)


def validate_timeout(name: str, value: object) -> int:
    """A timeout in ms: 0 means none (a job can turn off its worker's default), else 1 ms to
    a week."""
    return _require_int(name, value, 0, MAX_TIMEOUT_MS)


def timeout_from_opts(opts: Mapping[str, Any], default_ms: int | None) -> int | None:
    """The timeout of a job in ms (None = no limit): its own ``timeout_ms`` if stored (0 turns
    the worker's default off), else the worker's default."""
    raw = opts.get("timeout_ms")
    if isinstance(raw, int) and not isinstance(raw, bool) and 0 <= raw <= MAX_TIMEOUT_MS:
        return raw or None
    return default_ms or None


def retention_from_opts(opts: Mapping[str, Any], name: str) -> Retention:
    """The retention stored in a job's opts (keep all when absent or unreadable)."""
    raw = opts.get(name)
    if isinstance(raw, Mapping):
        try:
            return Retention(int(raw.get("count", -1)), int(raw.get("age_ms", 0)))
        except (TypeError, ValueError):
            pass
    return Retention()
