"""``durable=True`` adds: after the add, ``WAITAOF 1 0 <timeout>`` on the same connection asks
the server to confirm that it fsynced the add to its append-only file; anything else raises
``DurabilityNotConfirmed`` (the jobs stay added)."""

from __future__ import annotations

from typing import Any

from redis.asyncio.client import Pipeline

from .errors import DurabilityNotConfirmed, InvalidJobOptions

DEFAULT_DURABLE_TIMEOUT_MS = 1_000


def validate_durable(durable: object, timeout_ms: object) -> tuple[bool, int]:
    """Check ``durable`` (a bool) and ``durable_timeout_ms`` (ms, 1 to 1 hour)."""
    if not isinstance(durable, bool):
        raise InvalidJobOptions(f"durable={durable!r} is invalid: expected True or False")
    if (
        not isinstance(timeout_ms, int)
        or isinstance(timeout_ms, bool)
        or not 1 <= timeout_ms <= 3_600_000
    ):
        raise InvalidJobOptions(
            f"durable_timeout_ms={timeout_ms!r} is invalid: expected milliseconds, 1 to 3600000"
        )
    return durable, timeout_ms


def wait_for_fsync(pipe: Pipeline, timeout_ms: int) -> None:
    """Queue ``WAITAOF 1 0 timeout_ms`` after the writes already on ``pipe``: a pipeline runs
    on one connection, and WAITAOF waits for that connection's last write."""
    pipe.execute_command("WAITAOF", 1, 0, timeout_ms)


def confirm(reply: Any, timeout_ms: int, jobs: list[Any]) -> None:
    """Raise ``DurabilityNotConfirmed`` unless the WAITAOF ``reply`` counts the local fsync."""
    ids = ", ".join(str(getattr(job, "id", job)) for job in jobs[:10])
    more = f" and {len(jobs) - 10} more" if len(jobs) > 10 else ""
    added = f"job(s) {ids}{more} were added, but "
    if isinstance(reply, Exception):
        raise DurabilityNotConfirmed(
            f"{added}the server cannot confirm they are on disk: {reply} (durable=True needs "
            "appendonly yes; or add without durable=True)",
            jobs,
        )
    local = int(reply[0]) if isinstance(reply, list | tuple) and reply else 0
    if local < 1:
        raise DurabilityNotConfirmed(
            f"{added}the server did not confirm an fsync to its AOF within "
            f"durable_timeout_ms={timeout_ms} (WAITAOF 1 0 {timeout_ms} counted {local} local "
            "fsyncs; check appendfsync and disk latency, or raise the timeout)",
            jobs,
        )
