"""The flow part of the invariant checker: scans every key of some queues and reports what
would make a flow inconsistent (orphans, stale dependencies, parents stuck with no child)."""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis

from engine.flow_model import JobRef
from engine.job import ALL_STATES, LIST_STATES
from engine.keys import QueueKeys

_SUBKEYS = ("lock", "logs", "dependencies", "processed", "ignored", "failed")


async def _states_of(redis: aioredis.Redis, keys: QueueKeys, job_id: str) -> list[str]:
    found = []
    for state in ALL_STATES:
        key = keys.of_state(state.value)
        if state in LIST_STATES:
            if await redis.lpos(key, job_id) is not None:
                found.append(state.value)
        elif await redis.zscore(key, job_id) is not None:
            found.append(state.value)
    return found


async def flow_problems(redis: aioredis.Redis, queues: list[str]) -> list[str]:
    """Everything wrong with the jobs of ``queues`` (an empty list when all is well)."""
    problems: list[str] = []
    for queue in queues:
        keys = QueueKeys(queue)
        job_keys: set[str] = set()
        sub_keys: list[tuple[str, str]] = []
        async for raw in redis.scan_iter(match=keys.job_prefix + "*", count=1000):
            key = str(raw)
            rest = key[len(keys.job_prefix) :]
            if ":" in rest:
                job_id, suffix = rest.split(":", 1)
                sub_keys.append((job_id, suffix))
            else:
                job_keys.add(rest)
        for job_id, suffix in sub_keys:
            if suffix not in _SUBKEYS:
                problems.append(f"{queue}:{job_id}: unknown key suffix {suffix!r}")
            elif suffix not in ("lock",) and job_id not in job_keys:
                problems.append(f"{queue}:{job_id}: {suffix} left without the job")
        for job_id in sorted(job_keys):
            problems += await _job_problems(redis, keys, job_id)
        for state in ALL_STATES:
            key = keys.of_state(state.value)
            members: Any = (
                await redis.lrange(key, 0, -1)
                if state in LIST_STATES
                else await redis.zrange(key, 0, -1)
            )
            for member in members:
                if str(member) not in job_keys:
                    problems.append(f"{queue}:{member}: in {state.value} without a job hash")
    return problems


async def _job_problems(redis: aioredis.Redis, keys: QueueKeys, job_id: str) -> list[str]:
    where = f"{keys.queue}:{job_id}"
    problems = []
    states = await _states_of(redis, keys, job_id)
    if len(states) != 1:
        problems.append(f"{where}: in {len(states)} states {states}")
    deps = [str(k) for k in await redis.smembers(keys.dependencies(job_id))]
    if "waiting-children" in states and not deps:
        problems.append(f"{where}: waits for children but has no pending child")
    for dep in deps:
        child = JobRef.from_key(dep)
        if child is None or not await redis.exists(dep):
            problems.append(f"{where}: pending child {dep} does not exist")
            continue
        if await redis.hget(dep, "parent") != keys.job(job_id):
            problems.append(f"{where}: pending child {dep} does not point back")
        if "completed" in await _states_of(redis, child.keys, child.id):
            problems.append(f"{where}: pending child {dep} has completed")
    parent_key = str(await redis.hget(keys.job(job_id), "parent") or "")
    if parent_key and not await redis.exists(parent_key):
        problems.append(f"{where}: its parent {parent_key} does not exist")
    return problems
