"""A BullMQ job's place in a flow: its parent (the child's ``parent`` and ``parentKey`` fields), its
children (full job keys in the parent's ``:dependencies``, ``:unsuccessful``, ``:failed`` and
``:processed``), each with its name and state, and the parent links up to the flow's root.

Children may live in other queues, even under another prefix: such a job is named by the queue
``<its prefix>:<queue>``, so it is read where it is. Bounded, read-only reads only.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from dashboard.backend import FLOW_PATH_MAX
from dashboard.bullmq.job_reads import FIND_ORDER, place_of, read_place
from dashboard.bullmq.keys import BullKeys
from dashboard.model import JobLink, JobLinks
from dashboard.sanitize import from_redis

PARENT_FIELDS = ("parent", "parentKey")
LINK_FIELDS = ("name", "failedReason")


@dataclass(frozen=True, slots=True)
class FlowRef:
    """A job as a flow points at it: its queue's keys, its id, and its queue as shown."""

    keys: BullKeys
    id: str
    queue: str
    """The queue's name, or ``<prefix>:<queue>`` for a queue under another prefix."""

    @property
    def key(self) -> str:
        """The job's full key: what a parent's children sets hold."""
        return self.keys.job(self.id)


def queue_keys(prefix: str, queue: str) -> BullKeys:
    """The keys of a queue as a link names it (BullMQ queue names hold no ``:``, so a name that
    does is ``<another prefix>:<queue>``)."""
    if ":" in queue:
        other, _, name = queue.rpartition(":")
        return BullKeys(other, name)
    return BullKeys(prefix, queue)


def _ref_in(queue_key: str, job_id: str, prefix: str) -> FlowRef | None:
    """The job ``job_id`` of the qualified queue ``<prefix>:<queue>``."""
    other, sep, name = queue_key.rpartition(":")
    if not sep or not other or not name or not job_id:
        return None
    shown = name if other == prefix else queue_key
    return FlowRef(BullKeys(other, name), job_id, shown)


def ref_of_key(key: str, prefix: str) -> FlowRef | None:
    """The job of a full key: ``<prefix>:<queue>:<id>`` (ids may hold ``:``, queue names do
    not); under another prefix, its last ``:`` ends the queue part. None if it is no job key."""
    head = prefix + ":"
    if key.startswith(head):
        queue, _, job_id = key[len(head) :].partition(":")
        return _ref_in(head + queue, job_id, prefix) if queue else None
    queue_key, _, job_id = key.rpartition(":")
    return _ref_in(queue_key, job_id, prefix)


def parent_ref(parent_json: str | None, parent_key: str | None, prefix: str) -> FlowRef | None:
    """A child's parent: from the ``parent`` field (``{"id", "queueKey"}``, exact even under
    another prefix), else from ``parentKey``; None for a job with no (readable) parent."""
    try:
        parent = json.loads(parent_json) if parent_json else None
    except ValueError:
        parent = None
    if isinstance(parent, dict):
        queue_key, job_id = parent.get("queueKey"), parent.get("id")
        if isinstance(queue_key, str) and isinstance(job_id, str):
            found = _ref_in(queue_key, job_id, prefix)
            if found is not None:
                return found
    return ref_of_key(parent_key, prefix) if parent_key else None


def _texts(values: Iterable[Any]) -> list[str]:
    return [from_redis(value) for value in values]


def _unique(groups: Iterable[Iterable[str]]) -> list[str]:
    seen: dict[str, None] = {}
    for group in groups:
        for key in group:
            seen.setdefault(key, None)
    return list(seen)


async def _read_refs(client: Redis, refs: Sequence[FlowRef], pending: set[str]) -> list[JobLink]:
    """Name, failure reason, state and whether each job has children of its own: one pipeline."""
    async with client.pipeline(transaction=False) as pipe:
        for ref in refs:
            keys, job_id = ref.keys, ref.id
            pipe.exists(keys.job(job_id))
            pipe.hmget(keys.job(job_id), list(LINK_FIELDS))
            pipe.exists(
                keys.dependencies(job_id),
                keys.unsuccessful(job_id),
                keys.failed_children(job_id),
                keys.processed(job_id),
            )
            read_place(pipe, keys, job_id)
        replies: list[Any] = await pipe.execute() if refs else []
    per = 3 + len(FIND_ORDER)
    links = []
    for index, ref in enumerate(refs):
        exists, (name, reason), children, *places = replies[index * per : (index + 1) * per]
        links.append(
            JobLink(
                queue=ref.queue,
                id=ref.id,
                name=from_redis(name) if name is not None else "",
                state=place_of(places),
                exists=bool(exists),
                has_children=bool(children),
                failed_reason=from_redis(reason) if reason else None,
                pending=ref.key in pending,
            )
        )
    return links


def _read_job(pipe: Pipeline, keys: BullKeys, job_id: str, sample: int) -> None:
    """Queue the reads of a job's own fields, its children's four sets (sizes and up to
    ``sample`` keys of each) and its state."""
    pipe.exists(keys.job(job_id))
    pipe.hmget(keys.job(job_id), [*LINK_FIELDS, *PARENT_FIELDS])
    pipe.scard(keys.dependencies(job_id))
    pipe.zcard(keys.unsuccessful(job_id))
    pipe.hlen(keys.failed_children(job_id))
    pipe.hlen(keys.processed(job_id))
    pipe.srandmember(keys.dependencies(job_id), sample)
    pipe.zrange(keys.unsuccessful(job_id), 0, max(sample, 1) - 1)  # 0 -1 would read them all
    pipe.hrandfield(keys.failed_children(job_id), sample)
    pipe.hrandfield(keys.processed(job_id), sample)
    read_place(pipe, keys, job_id)


def _child_keys(samples: Sequence[Any], sample: int) -> tuple[list[str], set[str]]:
    """The first ``sample`` child keys in the order they are listed, and the pending ones."""
    pending, failing, ignored, done = samples
    pending_keys = sorted(_texts(pending or ()))
    ordered = [pending_keys, _texts(failing or ()), sorted(_texts(ignored or ()))]
    ordered.append(sorted(_texts(done or ())))
    return _unique(ordered)[:sample], set(pending_keys)


async def read_job_links(
    client: Redis, prefix: str, queue: str, job_id: str, max_children: int
) -> JobLinks | None:
    """The job, its parent, and its first ``max_children`` children: those its parent still
    waits for first, then those that failed it, those whose failure it ignored, and those that
    completed (each group sorted). None if the job's hash is gone."""
    keys, sample = queue_keys(prefix, queue), max(max_children, 0)
    async with client.pipeline(transaction=False) as pipe:
        _read_job(pipe, keys, job_id, sample)
        exists, fields, *rest = await pipe.execute()
    if not exists:
        return None
    counts, samples, places = rest[:4], rest[4:8], rest[8:]
    name, reason, parent_json, parent_key = (None if v is None else from_redis(v) for v in fields)
    keys_read, pending = _child_keys(samples, sample)
    children = [ref for key in keys_read if (ref := ref_of_key(key, prefix)) is not None]
    parent = parent_ref(parent_json, parent_key, prefix)
    linked = await _read_refs(client, [*([parent] if parent else []), *children], pending)
    total = sum(int(n) for n in counts)
    job = JobLink(
        queue=queue,
        id=job_id,
        name=name or "",
        state=place_of(places),
        has_children=total > 0,
        failed_reason=reason or None,
    )
    return JobLinks(
        job=job,
        parent=linked[0] if parent else None,
        children=tuple(linked[1:] if parent else linked),
        more_children=total > len(children),
    )


async def read_flow_path(
    client: Redis, prefix: str, queue: str, job_id: str
) -> list[tuple[str, str]]:
    """``(queue, job id)`` from the root of the job's flow down to the job: one HMGET per parent
    link, at most ``FLOW_PATH_MAX`` jobs (the deepest ones), stopping where links loop."""
    path = [FlowRef(queue_keys(prefix, queue), job_id, queue)]
    seen = {path[0].key}
    while len(path) < FLOW_PATH_MAX:
        ref = path[-1]
        raw = await client.hmget(ref.keys.job(ref.id), list(PARENT_FIELDS))
        parent_json, parent_key = (None if v is None else from_redis(v) for v in raw)
        up = parent_ref(parent_json, parent_key, prefix)
        if up is None or up.key in seen:
            break
        seen.add(up.key)
        path.append(up)
    return [(ref.queue, ref.id) for ref in reversed(path)]
