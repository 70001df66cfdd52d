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


class ScriptRegistry:
    """The engine's scripts, registered once on one client. With ``wire``, calls outside a
    pipeline go over that multiplexed connection instead of the client's pool."""

    def __init__(self, client: Redis, wire: MultiplexedConnection | None = None) -> None:
        self._scripts: dict[str, AsyncScript] = {
            name: client.register_script(script_source(name)) for name in SCRIPT_NAMES
        }
        self._wire = wire

    async def call(
        self,
        name: str,
        keys: list[str],
        args: list[Any],
        pipeline: Pipeline | None = None,
    ) -> Any:
        """Run script ``name`` (or queue it on ``pipeline``) and return its reply."""
        script = self._scripts[name]
        if pipeline is None and self._wire is not None:
            source = script.script
            assert isinstance(source, str)  # registered from the .lua text
            return await self._wire.evalsha(script.sha, source, keys, args)
        return await script(keys=keys, args=args, client=pipeline)
