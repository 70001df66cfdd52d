"""The invariant checker run after every reliability scenario.

One read-only Lua script (``#!lua flags=no-writes``) reads every state structure of a queue and
SCANs its job keys in a single atomic step, so the picture is consistent even while workers
still run; the rules are then checked in Python:

- each job id is in exactly one state structure (and at most once in a list);
- no state entry without a job hash, and no job hash without a state;
- no active job without a lock or a stall mark; stall marks only on active jobs; no lock on a
  job that is not active; no ``job:<id>:<suffix>`` key without its job hash;
- every job hash was fully written (name, data, opts, timestamp), finished jobs carry their
  ``finished_on`` (and failed ones their reason): nothing half-written;
- the events stream is within its cap (``max_events`` plus one stream node of ``~`` trimming);
- the finished zsets hold no more jobs than the monotonic counters say ever finished;
- flows: each parent's pending-children set (``job:<id>:dependencies``) holds exactly its
  children that still count as pending: those not finished, and those that failed for good
  without a failure policy (they keep the parent waiting). So every pending child exists,
  points back at the parent and has not completed (nor failed under a policy); every
  unfinished child of a live parent is pending on it; an unfinished child's parent exists; and
  no parent sits in ``waiting-children`` with no pending child (it would wait forever).
  One exception, which the engine allows: a child with ``remove_dependency_on_failure`` that
  failed is forgotten by its parent, and stays forgotten if it is retried.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from engine.keys import QueueKeys

DEFAULT_MAX_EVENTS = 10_000
DEFAULT_NODE_ENTRIES = 100  # stream-node-max-entries: how far "MAXLEN ~" may overshoot

STATE_NAMES = (
    "wait", "paused", "prioritized", "delayed", "active", "completed", "failed",
    "waiting-children",
)  # fmt: skip
LIST_STATES = ("wait", "paused")
REQUIRED_FIELDS = ("name", "data", "opts", "timestamp")
FINISHED = frozenset({"completed", "failed"})

_SNAPSHOT = """#!lua flags=no-writes
-- KEYS 1-8 the state structures (wait, paused: lists; the rest zsets), 9 stalled,
--      10 events, 11 meta, 12 counters
-- ARGV 1 job key prefix
-- Flow keys (a parent's dependencies, children in other queues) are reached from what the
-- SCAN finds, not declared: fine on one server, which is all the tests run.
local out = {}
for i = 1, 8 do
  if i <= 2 then
    out[i] = redis.call('LRANGE', KEYS[i], 0, -1)
  else
    out[i] = redis.call('ZRANGE', KEYS[i], 0, -1)
  end
end
out[9] = redis.call('SMEMBERS', KEYS[9])
out[10] = redis.call('XLEN', KEYS[10])
out[11] = redis.call('HGET', KEYS[11], 'max_events') or ''
out[12] = redis.call('HGETALL', KEYS[12])
-- flows: a child's key names its queue, so its state is read from that queue's zsets
local function finished(child_key)
  local base, id = string.match(child_key, '^(.*):job:([^:]+)$')
  if not base then return 0, 0 end
  local done = redis.call('ZSCORE', base .. ':completed', id) and 1 or 0
  local failed = redis.call('ZSCORE', base .. ':failed', id) and 1 or 0
  return done, failed
end
local job_keys, incomplete, unfinished, pending, children = {}, {}, {}, {}, {}
local cursor = '0'
repeat
  local reply = redis.call('SCAN', cursor, 'MATCH', ARGV[1] .. '*', 'COUNT', 1000)
  cursor = reply[1]
  for _, key in ipairs(reply[2]) do
    job_keys[#job_keys + 1] = key
    local rest = string.sub(key, #ARGV[1] + 1)
    local colon = string.find(rest, ':', 1, true)
    if not colon then
      local f = redis.call('HMGET', key, 'name', 'data', 'opts', 'timestamp',
                           'finished_on', 'failed_reason', 'parent', 'parent_policy')
      if not (f[1] and f[2] and f[3] and f[4]) then incomplete[#incomplete + 1] = rest end
      if redis.call('ZSCORE', KEYS[6], rest) and not f[5] then
        unfinished[#unfinished + 1] = rest
      end
      if redis.call('ZSCORE', KEYS[7], rest) and not (f[5] and f[6]) then
        unfinished[#unfinished + 1] = rest
      end
      if f[7] then
        children[#children + 1] = {rest, f[7], f[8] or '', redis.call('EXISTS', f[7]),
                                   redis.call('SISMEMBER', f[7] .. ':dependencies', key)}
      end
    elseif string.sub(rest, colon + 1) == 'dependencies' then
      for _, child in ipairs(redis.call('SMEMBERS', key)) do
        local c = redis.call('HMGET', child, 'parent', 'parent_policy')
        local done, failed = finished(child)
        pending[#pending + 1] = {string.sub(rest, 1, colon - 1), child,
                                 redis.call('EXISTS', child), c[1] or '', c[2] or '',
                                 done, failed}
      end
    end
  end
until cursor == '0'
out[13] = job_keys
out[14] = incomplete
out[15] = unfinished
out[16] = pending
out[17] = children
return out
"""


@dataclass(frozen=True)
class InvariantReport:
    """What the checker saw: jobs per state, and every broken rule in plain words."""

    queue: str
    counts: dict[str, int]
    violations: list[str] = field(default_factory=list)
    events_length: int = 0

    @property
    def total(self) -> int:
        """Jobs in any state."""
        return sum(self.counts.values())


async def _node_entries(client: aioredis.Redis) -> int:
    try:
        config: Any = await client.config_get("stream-node-max-entries")
    except ResponseError:
        return DEFAULT_NODE_ENTRIES
    return int(config.get("stream-node-max-entries") or DEFAULT_NODE_ENTRIES)


async def check_invariants(
    client: aioredis.Redis, queue: str | QueueKeys, *, max_examples: int = 5
) -> InvariantReport:
    """Check every rule for ``queue`` (a name under the default prefix, or its ``QueueKeys``)."""
    keys = queue if isinstance(queue, QueueKeys) else QueueKeys(queue)
    state_keys = [keys.of_state(s) for s in STATE_NAMES]
    reply: list[Any] = await client.eval(  # type: ignore[misc]
        _SNAPSHOT,
        12,
        *state_keys,
        keys.stalled,
        keys.events,
        keys.meta,
        keys.counters,
        keys.job_prefix,
    )
    members = {name: [str(x) for x in reply[i]] for i, name in enumerate(STATE_NAMES)}
    stalled = {str(x) for x in reply[8]}
    events_length = int(reply[9])
    max_events = int(reply[10] or DEFAULT_MAX_EVENTS)
    flat = [str(x) for x in reply[11]]
    counters = {flat[i]: int(flat[i + 1]) for i in range(0, len(flat), 2)}
    hashes, locks, extras = _classify(keys, [str(k) for k in reply[12]])
    incomplete = [str(x) for x in reply[13]]
    unfinished = [str(x) for x in reply[14]]

    problems: list[str] = []

    def broken(rule: str, ids: list[str] | set[str]) -> None:
        if ids:
            shown = sorted(ids)[:max_examples]
            more = f" (+{len(ids) - len(shown)} more)" if len(ids) > len(shown) else ""
            problems.append(f"{rule}: {', '.join(shown)}{more}")

    where: dict[str, list[str]] = {}
    for name, ids in members.items():
        for job_id in ids:
            where.setdefault(job_id, []).append(name)
    broken("in more than one state (or twice in one)", {j for j, s in where.items() if len(s) > 1})
    broken("in a state but no job hash", set(where) - hashes)
    broken("job hash but in no state", hashes - set(where))
    active = set(members["active"])
    broken("active with neither a lock nor a stall mark", active - locks - stalled)
    broken("stall mark on a job that is not active", stalled - active)
    broken("lock on a job that is not active", locks - active)
    broken("job key left without its job hash", {k for k, job_id in extras if job_id not in hashes})
    broken(f"job hash missing one of {REQUIRED_FIELDS}", set(incomplete))
    broken("finished without finished_on (or failed without a reason)", set(unfinished))
    state_of = {job_id: states[0] for job_id, states in where.items()}
    flows = _flow_violations(keys, state_of, members, reply[15], reply[16])
    for rule, concerned in flows.items():
        broken(rule, concerned)
    slack = await _node_entries(client)
    if events_length > max_events + slack:
        problems.append(f"events stream holds {events_length} > cap {max_events} + {slack}")
    for state in ("completed", "failed"):
        if len(members[state]) > counters.get(state, 0):
            problems.append(
                f"{len(members[state])} jobs in {state} but counters.{state} = "
                f"{counters.get(state, 0)}"
            )
    counts = {name: len(ids) for name, ids in members.items()}
    return InvariantReport(keys.queue, counts, problems, events_length)


def _flow_violations(
    keys: QueueKeys,
    state_of: dict[str, str],
    members: dict[str, list[str]],
    pending_rows: list[Any],
    child_rows: list[Any],
) -> dict[str, set[str]]:
    """Broken flow rules -> the jobs they concern (``parent <- child`` for a pending entry).

    ``pending_rows``: one per entry of a dependencies set of a parent of this queue (parent
    id, child key, child exists, the child's ``parent`` field, its policy, completed, failed).
    ``child_rows``: one per job of this queue that has a parent (id, parent key, policy,
    parent exists, pending on it)."""
    found: dict[str, set[str]] = {}
    has_pending: set[str] = set()
    for raw in pending_rows:
        row = [str(x) for x in raw]
        has_pending.add(row[0])
        rule = _pending_rule(keys, row)
        if rule:
            found.setdefault(rule, set()).add(f"{row[0]} <- {row[1]}")
    for raw in child_rows:
        row = [str(x) for x in raw]
        state = state_of.get(row[0])
        rule = _child_rule(state, row) if state is not None else None
        if rule:
            found.setdefault(rule, set()).add(row[0])
    stuck = set(members["waiting-children"]) - has_pending
    if stuck:
        found["waiting for children with no pending child"] = stuck
    return found


def _pending_rule(keys: QueueKeys, row: list[str]) -> str | None:
    """What is wrong with one entry of a parent's dependencies set, if anything. A child of
    this queue is judged from its own side (``_child_rule``), where its state is known."""
    parent_id, child_key, exists, points_to, policy, done, failed = row
    if exists == "0":
        return "pending child of a parent does not exist"
    if points_to != keys.job(parent_id):
        return "pending child of a parent points to another parent (or none)"
    if child_key.startswith(keys.job_prefix):
        return None
    if done == "1":
        return "child completed but still pending on its parent"
    if failed == "1" and policy:
        return "child failed under a failure policy but still pending on its parent"
    return None


def _child_rule(state: str, row: list[str]) -> str | None:
    """What is wrong with a child of a flow in ``state``, seen from its side, if anything."""
    _child_id, _parent_key, policy, parent_exists, in_pending = row
    if parent_exists == "0":
        unfinished = state not in FINISHED
        return "unfinished child of a flow whose parent does not exist" if unfinished else None
    # pending: not finished, or failed for good with no policy (it keeps the parent waiting)
    should_pend = state not in FINISHED or (state == "failed" and not policy)
    if in_pending == "1" and not should_pend:
        return f"child {state} but still pending on its parent"
    if in_pending == "0" and should_pend:
        if state == "failed":
            return "child failed with no failure policy but not pending on its parent"
        if policy != "remove":  # a parent forgets such a child at its failure, also if retried
            return "unfinished child of a flow not pending on its parent"
    return None


def _classify(
    keys: QueueKeys, job_keys: list[str]
) -> tuple[set[str], set[str], set[tuple[str, str]]]:
    """Split ``job:...`` keys into job hash ids, ids with a lock, and other per-job keys."""
    hashes: set[str] = set()
    locks: set[str] = set()
    extras: set[tuple[str, str]] = set()
    for key in job_keys:
        rest = key[len(keys.job_prefix) :]
        job_id, sep, suffix = rest.partition(":")
        if not sep:
            hashes.add(job_id)
        else:
            if suffix == "lock":
                locks.add(job_id)
            extras.add((key, job_id))
    return hashes, locks, extras


async def assert_invariants(
    client: aioredis.Redis, queue: str | QueueKeys, **expected_counts: int
) -> InvariantReport:
    """Fail the test with every broken rule; optionally check the jobs per state too
    (``completed=40``; use ``waiting_children`` for the hyphenated state)."""
    report = await check_invariants(client, queue)
    assert not report.violations, f"invariants broken in queue {report.queue}:\n" + "\n".join(
        report.violations
    )
    for state, n in expected_counts.items():
        name = state.replace("_", "-")
        assert report.counts[name] == n, f"{report.queue}: {report.counts[name]} {name}, not {n}"
    return report
