"""FlowProducer: add trees of jobs in which a parent runs after its children, and read them.

A node of a tree is ``{"name", "queue", "data", "opts", "children": [...]}``; children may live
in other queues. A whole tree (or several, with ``add_bulk``) is written by one script call, so
no worker ever sees part of a flow. A flow may span queues: Corral runs on one server (a Redis
Cluster node is refused at connect, see ``connection.check_server``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

from redis.asyncio import Redis

from . import commands
from .connection import Connection, check_server, make_client
from .errors import InvalidJobOptions, JobNotFound, JobStateError, ScriptError
from .flow_model import Dependencies, JobRef
from .job import ALL_STATES, LIST_STATES, CorruptJob, Job, JobState
from .keys import DEFAULT_PREFIX, QueueKeys, validate_queue_name
from .options import JobOptions
from .scripts import ScriptRegistry
from .serialization import DEFAULT_MAX_PAYLOAD, dumps

# Jobs per add/add_bulk call and per removal: each is one script call, which blocks the server
# for about as long as that many add_job calls would take (tens of ms for 1,000).
MAX_FLOW_JOBS = 1000
MAX_TREE_REMOVE = 1000
MAX_DEPTH = 100
DEFAULT_MAX_EVENTS = 10_000

POLICIES = {
    "fail_parent_on_failure": "fail",
    "ignore_dependency_on_failure": "ignore",
    "remove_dependency_on_failure": "remove",
}
_NODE_KEYS = frozenset({"name", "queue", "data", "opts", "children"})
_ZSET_STATES = [s for s in ALL_STATES if s not in LIST_STATES]

FlowTree = Mapping[str, Any]


@dataclass(slots=True)
class FlowNode:
    """One job of a flow and its children. ``job`` is None when the job no longer exists (or
    cannot be read); ``truncated`` says that its children were not read (depth or size limit).
    ``duplicate`` marks a root that existed already when ``add`` was called."""

    ref: JobRef
    job: Job | None
    children: list[FlowNode] = field(default_factory=list)
    truncated: bool = False
    duplicate: bool = False


@dataclass(slots=True)
class _Node:
    ref_queue: str
    spec: commands.FlowJobSpec
    data: str
    opts: str
    parent: int  # index into the flat list, 0 = a root (1-based like the script)


def _job_name(name: object, where: str) -> str:
    if not isinstance(name, str) or not name or len(name) > 256 or not name.isprintable():
        raise InvalidJobOptions(
            f"{where}: job name {name!r} is invalid: expected 1-256 printable characters"
        )
    return name


def _policy(opts: dict[str, Any], where: str, is_root: bool) -> str:
    chosen = []
    for option, policy in POLICIES.items():
        value = opts.pop(option, False)
        if not isinstance(value, bool):
            raise InvalidJobOptions(f"{where}: {option}={value!r} is invalid: expected a bool")
        if value:
            chosen.append((option, policy))
    if len(chosen) > 1:
        raise InvalidJobOptions(
            f"{where}: {' and '.join(o for o, _ in chosen)} are both set: choose at most one "
            "failure policy"
        )
    if chosen and is_root:
        raise InvalidJobOptions(
            f"{where}: {chosen[0][0]} is set on a root job, which has no parent to apply it to"
        )
    return chosen[0][1] if chosen else ""


class _Flattener:
    """Checks a forest of trees and lays it out in pre-order, as add_flow.lua takes it."""

    def __init__(self, prefix: str, max_payload: int) -> None:
        self.prefix = prefix
        self.max_payload = max_payload
        self.queues: list[QueueKeys] = []
        self._queue_index: dict[str, int] = {}
        self.nodes: list[_Node] = []
        self._custom_ids: set[tuple[str, str]] = set()

    def add_tree(self, tree: object, where: str) -> None:
        self._add(tree, 0, where, 0)

    def _queue(self, name: object, where: str) -> int:
        try:
            validate_queue_name(name)
        except ValueError as exc:
            raise InvalidJobOptions(f"{where}: {exc}") from None
        assert isinstance(name, str)
        if name not in self._queue_index:
            self.queues.append(QueueKeys(name, self.prefix))
            self._queue_index[name] = len(self.queues)
        return self._queue_index[name]

    def _add(self, tree: object, parent: int, where: str, depth: int) -> None:
        if depth > MAX_DEPTH:
            raise InvalidJobOptions(f"{where}: a flow can be at most {MAX_DEPTH} levels deep")
        node = _node_shape(tree, where)
        name = _job_name(node["name"], where)
        queue = self._queue(node["queue"], where)
        opts, policy, opts_text = _options(node.get("opts"), where, is_root=parent == 0)
        if opts.job_id is not None:
            seen = (self.queues[queue - 1].queue, opts.job_id)
            if seen in self._custom_ids:
                raise InvalidJobOptions(
                    f"{where}: job_id {opts.job_id!r} is used twice in queue {seen[0]!r}"
                )
            self._custom_ids.add(seen)
        data = dumps(node.get("data"), what=f"data of job {name!r}", limit=self.max_payload)
        spec = commands.FlowJobSpec(
            queue=queue,
            parent=parent,
            job_id=opts.job_id or "",
            name=name,
            data=data,
            opts=opts_text,
            delay=opts.delay,
            priority=opts.priority,
            lifo=opts.lifo,
            attempts=opts.attempts,
            parent_policy=policy,
        )
        self.nodes.append(_Node(self.queues[queue - 1].queue, spec, data, opts_text, parent))
        if len(self.nodes) > MAX_FLOW_JOBS:
            raise InvalidJobOptions(
                f"a flow call can add at most {MAX_FLOW_JOBS} jobs; split the trees over "
                "several calls"
            )
        me = len(self.nodes)
        children = node.get("children") or []
        if not isinstance(children, list | tuple):
            raise InvalidJobOptions(f"{where}: children must be a list, not {children!r}")
        for i, child in enumerate(children):
            self._add(child, me, f"{where}.children[{i}]", depth + 1)


def _node_shape(tree: object, where: str) -> Mapping[str, Any]:
    if not isinstance(tree, Mapping):
        raise InvalidJobOptions(f"{where} is {tree!r}: expected a dict with name and queue")
    unknown = set(tree) - _NODE_KEYS
    if unknown:
        raise InvalidJobOptions(
            f"{where} has unknown keys {sorted(unknown)}: expected some of {sorted(_NODE_KEYS)}"
        )
    if "name" not in tree or "queue" not in tree:
        raise InvalidJobOptions(f"{where} needs a 'name' and a 'queue'")
    return tree


def _options(raw: object, where: str, *, is_root: bool) -> tuple[JobOptions, str, str]:
    """A node's job options, its failure policy, and the opts JSON to store."""
    raw = raw or {}
    if not isinstance(raw, Mapping):
        raise InvalidJobOptions(f"{where}: opts must be a dict, not {raw!r}")
    given = dict(raw)
    policy = _policy(given, where, is_root)
    try:
        opts = JobOptions.build(**given)
    except InvalidJobOptions as exc:
        raise InvalidJobOptions(f"{where}: {exc}") from None
    stored = opts.to_json()
    stored.update({option: True for option, value in POLICIES.items() if value == policy})
    return opts, policy, dumps(stored, what="opts")


class FlowProducer:
    """Adds flows: ``await FlowProducer(connection).add({"name", "queue", "children": [...]})``.

    Each child may set one failure policy in its opts: ``fail_parent_on_failure`` (the
    parent fails), ``ignore_dependency_on_failure`` (the parent runs, and sees the failure) or
    ``remove_dependency_on_failure`` (the parent runs as if the child had not been there).
    Without one, a child that fails for good keeps its parent waiting until it is retried or
    removed.
    """

    def __init__(
        self,
        connection: Connection = None,
        *,
        prefix: str = DEFAULT_PREFIX,
        max_events: int = DEFAULT_MAX_EVENTS,
        max_payload: int = DEFAULT_MAX_PAYLOAD,
        allow_unsafe_eviction: bool = False,
    ) -> None:
        QueueKeys("x", prefix)  # validates the prefix
        if not isinstance(max_events, int) or max_events < 100:
            raise InvalidJobOptions(f"max_events={max_events!r} is invalid: expected an int >= 100")
        if not isinstance(max_payload, int) or max_payload < 1:
            raise InvalidJobOptions(f"max_payload={max_payload!r} is invalid: expected an int >= 1")
        self.prefix = prefix
        self.max_events = max_events
        self.max_payload = max_payload
        self._allow_unsafe = allow_unsafe_eviction
        self.client, self._owns_client = make_client(connection)
        self.scripts = ScriptRegistry(self.client)
        self._checked = False

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the connection if this producer opened it."""
        if self._owns_client:
            await self.client.aclose()

    async def _check(self) -> None:
        """Refuse an unsafe server (or a Redis Cluster node) before the first write."""
        if not self._checked:
            await check_server(self.client, allow_unsafe_eviction=self._allow_unsafe)
            self._checked = True

    async def add(self, tree: FlowTree) -> FlowNode:
        """Add one tree atomically and return it; the root's children are in ``children``.

        If the root has a custom ``job_id`` that exists, nothing is added and the existing
        flow is returned with ``duplicate=True``.
        """
        return (await self._add_forest([tree], "flow"))[0]

    async def add_bulk(self, trees: Iterable[FlowTree]) -> list[FlowNode]:
        """Add several trees in one atomic script call (at most ``MAX_FLOW_JOBS`` jobs)."""
        return await self._add_forest(list(trees), "flows")

    async def _add_forest(self, trees: list[FlowTree], what: str) -> list[FlowNode]:
        flat = _Flattener(self.prefix, self.max_payload)
        for i, tree in enumerate(trees):
            flat.add_tree(tree, what if what == "flow" else f"{what}[{i}]")
        if not flat.nodes:
            return []
        await self._check()
        now, placed = await commands.add_flow(
            self.scripts, flat.queues, [n.spec for n in flat.nodes], self.max_events
        )
        built: list[FlowNode | None] = []
        roots: list[FlowNode] = []
        for node, (job_id, state) in zip(flat.nodes, placed, strict=True):
            ref = JobRef(node.ref_queue, job_id, self.prefix)
            parent = built[node.parent - 1] if node.parent else None
            if state == "duplicated":
                existing = await self.get_flow(node.ref_queue, job_id)
                if existing is None:
                    raise JobNotFound(f"job {job_id!r} vanished right after it was added")
                built.append(None)
                roots.append(
                    FlowNode(existing.ref, existing.job, existing.children, duplicate=True)
                )
                continue
            if state == "" or (node.parent and parent is None):
                built.append(None)  # in the tree of a duplicate root
                continue
            job = self._job(node, job_id, state, now, parent.ref if parent else None)
            flow_node = FlowNode(ref, job)
            built.append(flow_node)
            if parent is None:
                roots.append(flow_node)
            else:
                parent.children.append(flow_node)
        return roots

    def _job(self, node: _Node, job_id: str, state: str, now: int, parent: JobRef | None) -> Job:
        spec = node.spec
        return Job(
            id=job_id,
            queue=node.ref_queue,
            name=spec.name,
            data=json.loads(node.data),
            opts=json.loads(node.opts),
            timestamp=now,
            delay=spec.delay,
            priority=spec.priority,
            attempts=spec.attempts,
            state=JobState(state),
            parent=parent,
        )

    async def get_flow(
        self, queue: str, job_id: str, *, depth: int = 10, max_children: int = 1000
    ) -> FlowNode | None:
        """The tree under one job (its descendants, ``depth`` levels down, at most
        ``max_children`` per job), or None if the job does not exist."""
        return await read_flow(
            self.client,
            JobRef(queue, job_id, self.prefix),
            depth=depth,
            max_children=max_children,
        )


# ---- reading -------------------------------------------------------------------------------


def _value(raw: str) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw  # written by something else: shown as it is


def _refs(keys: Iterable[str]) -> list[JobRef]:
    refs = [r for r in (JobRef.from_key(str(k)) for k in keys) if r is not None]
    return sorted(refs, key=_ref_order)


def _ref_order(ref: JobRef) -> tuple[str, int, str]:
    return (ref.queue, int(ref.id) if ref.id.isdigit() else -1, ref.id)


def _queue_dependency_reads(pipe: Any, ref: JobRef) -> None:
    keys = ref.keys
    pipe.smembers(keys.dependencies(ref.id))
    pipe.hgetall(keys.processed(ref.id))
    pipe.hgetall(keys.ignored(ref.id))
    pipe.zrange(keys.failed_children(ref.id), 0, -1)


def _parse_dependencies(pending: Any, processed: Any, ignored: Any, failed: Any) -> Dependencies:
    processed_refs = {str(k): JobRef.from_key(str(k)) for k in processed}
    ignored_refs = {str(k): JobRef.from_key(str(k)) for k in ignored}
    return Dependencies(
        unprocessed=_refs(pending),
        processed={
            ref: _value(str(processed[k]))
            for k, ref in sorted(processed_refs.items())
            if ref is not None
        },
        ignored={ref: str(ignored[k]) for k, ref in sorted(ignored_refs.items()) if ref},
        failed=_refs(failed),
    )


async def read_many_dependencies(client: Redis, refs: Sequence[JobRef]) -> list[Dependencies]:
    """The children of several jobs, read in one round trip."""
    if not refs:
        return []
    async with client.pipeline(transaction=False) as pipe:
        for ref in refs:
            _queue_dependency_reads(pipe, ref)
        replies = await pipe.execute()
    return [_parse_dependencies(*replies[i : i + 4]) for i in range(0, len(replies), 4)]


async def read_dependencies(client: Redis, keys: QueueKeys, job_id: str) -> Dependencies:
    """What a parent knows about its children, read in one round trip."""
    (deps,) = await read_many_dependencies(client, [JobRef(keys.queue, job_id, keys.prefix)])
    return deps


async def _read_jobs(
    client: Redis, refs: Sequence[JobRef], list_scan_limit: int = 0
) -> list[Job | None]:
    """Several jobs with their states in two round trips (None: gone or unreadable); a job in
    no sorted set is looked for in wait/paused among ``list_scan_limit`` entries (0 = all)."""
    per = 1 + len(_ZSET_STATES)
    async with client.pipeline(transaction=False) as pipe:
        for ref in refs:
            pipe.hgetall(ref.key)
            for state in _ZSET_STATES:
                pipe.zscore(ref.keys.of_state(state.value), ref.id)
        replies = await pipe.execute()
    states: list[JobState | None] = []
    for i in range(len(refs)):
        scores = replies[i * per + 1 : (i + 1) * per]
        found = [s for s, score in zip(_ZSET_STATES, scores, strict=True) if score is not None]
        states.append(found[0] if found else None)
    unplaced = [i for i, s in enumerate(states) if s is None and replies[i * per]]
    if unplaced:
        async with client.pipeline(transaction=False) as pipe:
            for i in unplaced:
                pipe.lpos(refs[i].keys.wait, refs[i].id, maxlen=list_scan_limit or None)
                pipe.lpos(refs[i].keys.paused, refs[i].id, maxlen=list_scan_limit or None)
            found_in = await pipe.execute()
        for n, i in enumerate(unplaced):
            if found_in[2 * n] is not None:
                states[i] = JobState.WAIT
            elif found_in[2 * n + 1] is not None:
                states[i] = JobState.PAUSED
    jobs: list[Job | None] = []
    for i, ref in enumerate(refs):
        fields = {str(k): str(v) for k, v in replies[i * per].items()}
        try:
            jobs.append(Job.from_hash(ref.queue, ref.id, fields, states[i]) if fields else None)
        except CorruptJob:
            jobs.append(None)
    return jobs


async def read_flow(
    client: Redis,
    root: JobRef,
    *,
    depth: int = 10,
    max_children: int = 1000,
    list_scan_limit: int = 0,
) -> FlowNode | None:
    """The tree under ``root``, read level by level (three round trips per level).

    ``list_scan_limit`` bounds the search of a waiting job in its queue's wait or paused list
    (0 = the whole list, as ``Queue.get_job_state``); a job not found within it has no state.
    """
    (job,) = await _read_jobs(client, [root], list_scan_limit)
    if job is None and not await client.exists(root.key):
        return None
    top = FlowNode(root, job)
    level = [top]
    for _ in range(depth + 1):
        deps = await read_many_dependencies(client, [n.ref for n in level])
        if _ == depth:  # one level too deep: only say whether there is more
            for node, dep in zip(level, deps, strict=True):
                node.truncated = bool(dep.children())
            break
        child_refs = [d.children() for d in deps]
        flat = [ref for refs in child_refs for ref in refs[:max_children]]
        jobs = iter(await _read_jobs(client, flat, list_scan_limit) if flat else [])
        next_level: list[FlowNode] = []
        for node, refs in zip(level, child_refs, strict=True):
            node.truncated = len(refs) > max_children
            for ref in refs[:max_children]:
                child = FlowNode(ref, next(jobs))
                node.children.append(child)
                next_level.append(child)
        level = next_level
        if not level:
            break
    return top


# ---- removing ------------------------------------------------------------------------------


async def _tree_queues(client: Redis, root: JobRef) -> list[QueueKeys]:
    """Every queue of the subtree under ``root``, and its parent's queue."""
    queues = {root.keys}
    parent = JobRef.from_key(str(await client.hget(root.key, "parent") or ""))
    if parent is not None:
        queues.add(parent.keys)
    seen, level = {root}, [root]
    while level and len(seen) <= MAX_TREE_REMOVE:
        children = [r for d in await read_many_dependencies(client, level) for r in d.children()]
        level = [r for r in dict.fromkeys(children) if r not in seen]
        seen.update(level)
        queues.update(r.keys for r in level)
    return sorted(queues, key=lambda k: (k.prefix, k.queue))


async def remove_flow_job(
    client: Redis, scripts: ScriptRegistry, keys: QueueKeys, job_id: str
) -> str:
    """Remove a job of a flow and its descendants, and detach it from its parent; return
    the state it was in. Refused while a worker holds any job of the subtree."""
    root = JobRef(keys.queue, job_id, keys.prefix)
    where = f"job {job_id!r} in queue {keys.queue!r}"
    for _ in range(5):
        queues = await _tree_queues(client, root)
        result = await commands.remove_tree(scripts, queues, root.key, MAX_TREE_REMOVE)
        if result.code == 1:
            return result.state
        if result.code == ScriptError.JOB_NOT_FOUND:
            raise JobNotFound(f"{where} does not exist (remove_tree)")
        if result.code == ScriptError.JOB_LOCKED:
            held = JobRef.from_key(result.detail)
            what = "it" if held == root else f"its descendant {held}"
            raise JobStateError(
                f"{where} was not removed: {what} is being processed by a worker; wait for it "
                "to finish (nothing was removed)",
                state="active",
            )
        if result.code == ScriptError.TOO_MANY:
            raise JobStateError(
                f"{where} was not removed: its flow has more than {MAX_TREE_REMOVE} jobs "
                "below it; remove some of its children first",
                state="flow",
            )
        # QUEUE_NOT_PASSED: the tree changed while it was read; read it again
    raise JobStateError(f"{where} was not removed: its flow kept changing; try again")
