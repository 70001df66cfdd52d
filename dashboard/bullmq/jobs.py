"""BullMQ job hashes decoded for the dashboard: table rows, and the full detail with options under
their long names (``de`` -> ``deduplication``...), parent, children and BullMQ's own counters.

Nothing here does I/O; a hash that is not a BullMQ job comes back flagged malformed, never raises.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from dashboard.bullmq.replies import int_field
from dashboard.model import JobDetail, JobRow

OPTS_LONG_NAMES: dict[str, str] = {
    "de": "deduplication",
    "fpof": "failParentOnFailure",
    "cpof": "continueParentOnFailure",
    "idof": "ignoreDependencyOnFailure",
    "rdof": "removeDependencyOnFailure",
    "kl": "keepLogs",
}
"""Options BullMQ stores under short names in the ``opts`` JSON (and in the ``parent`` field)."""

TELEMETRY_SHORT_NAMES: dict[str, str] = {"tm": "metadata", "omc": "omitContext"}
"""Short option names that BullMQ folds into ``telemetry``."""

ROW_FIELDS: tuple[str, ...] = (
    "name",
    "timestamp",
    "finishedOn",
    "atm",
    "attemptsMade",
    "opts",
    "failedReason",
    "progress",
)
"""Hash fields a table row needs (``attemptsMade`` is the pre-v5 spelling of ``atm``)."""

DETAIL_FIELDS: tuple[tuple[str, str], ...] = (
    ("delay", "delay requested (ms)"),
    ("priority", "priority"),
    ("ats", "attempts started"),
    ("stc", "times stalled"),
    ("defa", "deferred failure"),
    ("pb", "processed by"),
    ("deid", "deduplication id"),
    ("rjk", "job scheduler / repeat key"),
    ("nrjid", "next repeat job id"),
    ("tm", "telemetry metadata"),
)
"""Hash fields shown in the "bullmq" section, with what they mean."""


class NotAJob(ValueError):
    """The hash does not decode as a BullMQ job; ``reason`` says what is wrong."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def long_opts(opts: Mapping[str, Any]) -> dict[str, Any]:
    """BullMQ's stored options with every short name replaced by the option's long name."""
    decoded: dict[str, Any] = {}
    for name, value in opts.items():
        if name in TELEMETRY_SHORT_NAMES:
            telemetry = decoded.setdefault("telemetry", {})
            if isinstance(telemetry, dict):
                telemetry[TELEMETRY_SHORT_NAMES[name]] = value
        else:
            decoded[OPTS_LONG_NAMES.get(name, name)] = value
    return decoded


def _json(fields: Mapping[str, str], name: str, default: Any = None) -> Any:
    raw = fields.get(name)
    if raw is None or raw == "":
        return default
    try:
        return json.loads(raw)
    except ValueError:
        raise NotAJob(f"field {name!r} is not JSON: {raw[:40]!r}") from None


def _opts(fields: Mapping[str, str]) -> dict[str, Any]:
    opts = _json(fields, "opts", {})
    if not isinstance(opts, dict):
        raise NotAJob("field 'opts' is not a JSON object")
    return opts


def _attempts_made(fields: Mapping[str, str]) -> int:
    """``atm`` (v5+), else ``attemptsMade`` (older data), else 0."""
    made = int_field(fields, "atm", NotAJob)
    if made is None:
        made = int_field(fields, "attemptsMade", NotAJob)
    return made or 0


def _attempts(opts: Mapping[str, Any]) -> int:
    """``opts.attempts``; Node stores 0 for "no retries", shown as 1 attempt."""
    attempts = opts.get("attempts")
    return attempts if isinstance(attempts, int) and attempts > 1 else 1


def _check_job(fields: Mapping[str, str]) -> None:
    if "name" not in fields:
        raise NotAJob("no 'name' field: this hash is not a BullMQ job")
    if "timestamp" not in fields:
        raise NotAJob("no 'timestamp' field: this hash is not a BullMQ job")


def job_row(job_id: str, state: str, values: Sequence[str | None]) -> JobRow:
    """A table row from the ``ROW_FIELDS`` of one job (None for a job whose hash is gone)."""
    fields = {
        name: value for name, value in zip(ROW_FIELDS, values, strict=True) if value is not None
    }
    try:
        _check_job(fields)
        opts = _opts(fields)
        return JobRow(
            id=job_id,
            state=state,
            name=fields["name"],
            timestamp_ms=int_field(fields, "timestamp", NotAJob),
            finished_on_ms=int_field(fields, "finishedOn", NotAJob),
            attempts_made=_attempts_made(fields),
            attempts=_attempts(opts),
            failed_reason=fields.get("failedReason") or None,
            progress=fields.get("progress") or None,
        )
    except NotAJob:
        return JobRow(
            id=job_id,
            state=state,
            name=fields.get("name", ""),
            failed_reason=fields.get("failedReason") or None,
            malformed=True,
        )


@dataclass(frozen=True, slots=True)
class Family:
    """A job's flow links as read (bounded samples of its children)."""

    pending: int = 0
    pending_sample: tuple[str, ...] = ()
    processed: int = 0
    processed_sample: tuple[tuple[str, str], ...] = ()
    ignored: int = 0
    ignored_sample: tuple[tuple[str, str], ...] = ()
    unsuccessful: int = 0
    unsuccessful_sample: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class JobExtras:
    """What the detail read found besides the hash."""

    logs: tuple[str, ...] = ()
    log_count: int = 0
    due_ms: int | None = None
    """When a delayed job runs, decoded from its ``delayed`` score."""
    family: Family = field(default_factory=Family)


def job_detail(
    queue: str, job_id: str, state: str | None, fields: Mapping[str, str], extras: JobExtras
) -> JobDetail:
    """Every field of the job decoded; a hash that is not a job keeps its raw fields."""
    raw = tuple(sorted(fields.items()))
    try:
        _check_job(fields)
        opts = _opts(fields)
        stack = _json(fields, "stacktrace", [])
        if not isinstance(stack, list):
            raise NotAJob("field 'stacktrace' is not a JSON array")
        detail = JobDetail(
            id=job_id,
            queue=queue,
            state=state,
            name=fields["name"],
            data=_json(fields, "data"),
            opts=long_opts(opts),
            timestamp_ms=int_field(fields, "timestamp", NotAJob),
            processed_on_ms=int_field(fields, "processedOn", NotAJob),
            finished_on_ms=int_field(fields, "finishedOn", NotAJob),
            attempts_made=_attempts_made(fields),
            attempts=_attempts(opts),
            progress=_json(fields, "progress"),
            returnvalue=_json(fields, "returnvalue"),
            failed_reason=fields.get("failedReason") or None,
            stacktrace=tuple(str(line) for line in stack if line is not None),
            logs=extras.logs,
            worker=fields.get("pb") or None,
            raw=raw,
            sections=_sections(fields, extras),
        )
    except NotAJob as exc:
        return JobDetail(
            id=job_id,
            queue=queue,
            state=state,
            name=fields.get("name", ""),
            logs=extras.logs,
            malformed=True,
            malformed_reason=exc.reason,
            raw=raw,
        )
    return detail


def _sections(fields: Mapping[str, str], extras: JobExtras) -> tuple[tuple[str, str], ...]:
    sections = []
    lines = [f"{label}: {fields[name]}" for name, label in DETAIL_FIELDS if fields.get(name)]
    if extras.due_ms is not None:
        lines.append(f"due at (ms): {extras.due_ms}")
    if extras.log_count > len(extras.logs):
        lines.append(f"log lines: {extras.log_count} (newest {len(extras.logs)} shown)")
    if lines:
        sections.append(("bullmq", "\n".join(lines)))
    parent = _parent_text(fields)
    if parent:
        sections.append(("parent", parent))
    children = _children_text(extras.family)
    if children:
        sections.append(("children", children))
    return tuple(sections)


def _parent_text(fields: Mapping[str, str]) -> str:
    lines = []
    if fields.get("parentKey"):
        lines.append(f"key: {fields['parentKey']}")
    if fields.get("parent"):
        parent = _json(fields, "parent")
        if isinstance(parent, dict):
            lines.extend(f"{k}: {json.dumps(v)}" for k, v in long_opts(parent).items())
        else:
            raise NotAJob("field 'parent' is not a JSON object")
    return "\n".join(lines)


def _children_text(family: Family) -> str:
    lines = []
    if family.pending:
        lines.append(f"pending: {family.pending}")
        lines.extend(f"  {key}" for key in family.pending_sample)
    if family.processed:
        lines.append(f"completed: {family.processed}")
        lines.extend(f"  {key} -> {value}" for key, value in family.processed_sample)
    if family.ignored:
        lines.append(f"failed, ignored by the parent: {family.ignored}")
        lines.extend(f"  {key}: {reason}" for key, reason in family.ignored_sample)
    if family.unsuccessful:
        lines.append(f"failed the parent: {family.unsuccessful}")
        lines.extend(f"  {key}" for key in family.unsuccessful_sample)
    return "\n".join(lines)
