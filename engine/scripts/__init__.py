"""ScriptRegistry: reads the ``.lua`` files once, expands includes, and calls them by SHA.

redis-py's script objects send EVALSHA and reload the script on NOSCRIPT, so a ``SCRIPT FLUSH``
or a restarted server costs one transparent reload. Inside a pipeline, the pipeline loads any
missing script before it runs.
"""

from __future__ import annotations

import re
from functools import cache
from importlib.resources import files
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.commands.core import AsyncScript

from ..multiplex import MultiplexedConnection

_INCLUDE = re.compile(r"^-- include: (\w+)$", re.MULTILINE)

SCRIPT_NAMES = (
    "add_job",
    "add_jobs",
    "move_to_active",
    "complete_job",
    "complete_jobs",
    "fail_job",
    "extend_locks",
    "recover_stalled",
    "hand_back_job",
    "update_progress",
    "add_log",
    "retry_job",
    "retry_jobs",
    "promote_job",
    "remove_job",
    "pause_queue",
    "resume_queue",
    "clean_jobs",
    "drain_queue",
    "obliterate_queue",
    "upsert_job_scheduler",
    "schedule_next_job",
    "remove_job_scheduler",
    "add_deduplicated_job",
    "remove_deduplication_key",
    "rate_limit_queue",
    "change_priority",
    "update_data",
    "move_to_delayed",
    "add_flow",
    "remove_tree",
    "cancel_job",
    "dead_letter_job",
    "replay_dead_letters",
    "set_breaker",
    "reset_breaker",
    "remove_breaker",
)


def _read(name: str) -> str:
    return (files(__name__) / f"{name}.lua").read_text(encoding="utf-8")


@cache
def script_source(name: str) -> str:
    """The full text of one script, with its ``-- include: x`` lines replaced by ``x.lua``."""
    if name not in SCRIPT_NAMES:
        raise KeyError(f"no script named {name!r}")
    return _INCLUDE.sub(lambda m: _read(m.group(1)), _read(name))


class ScriptBatch:
    """Script calls collected to be sent together over a multiplexed connection (see
    ``ScriptRegistry.batch``): pass it where a ``pipeline`` goes, then ``execute()``."""

    def __init__(self, wire: MultiplexedConnection) -> None:
        self._wire = wire
        self._calls: list[tuple[str, str, list[str], list[Any]]] = []

    def add(self, script: AsyncScript, keys: list[str], args: list[Any]) -> None:
        """Queue one call of ``script``."""
        source = script.script
        assert isinstance(source, str)  # registered from the .lua text
        self._calls.append((script.sha, source, keys, args))

    async def execute(self) -> list[Any]:
        """Send every queued call at once; the replies in order."""
        calls, self._calls = self._calls, []
        return await self._wire.evalsha_many(calls) if calls else []


class ScriptRegistry:
    """The engine's scripts, registered once on one client. With ``wire``, calls outside a
    pipeline go over that multiplexed connection instead of the client's pool."""

    def __init__(self, client: Redis, wire: MultiplexedConnection | None = None) -> None:
        self._scripts: dict[str, AsyncScript] = {
            name: client.register_script(script_source(name)) for name in SCRIPT_NAMES
        }
        self._wire = wire

    def batch(self) -> ScriptBatch | None:
        """A batch of calls sent together over the multiplexed connection, or None when this
        registry has none (then use a pipeline of the client)."""
        return ScriptBatch(self._wire) if self._wire is not None else None

    async def call(
        self,
        name: str,
        keys: list[str],
        args: list[Any],
        pipeline: Pipeline | ScriptBatch | None = None,
    ) -> Any:
        """Run script ``name`` (or queue it on ``pipeline``) and return its reply."""
        script = self._scripts[name]
        if isinstance(pipeline, ScriptBatch):
            pipeline.add(script, keys, args)
            return None
        if pipeline is None and self._wire is not None:
            source = script.script
            assert isinstance(source, str)  # registered from the .lua text
            return await self._wire.evalsha(script.sha, source, keys, args)
        return await script(keys=keys, args=args, client=pipeline)
