"""Which BullMQ workers are connected, from ``CLIENT LIST``: Node names a worker's connections
``<prefix>:<base64(queue)>`` (plus ``:w:<worker name>``), the Python port ``<prefix>:<queue>``.

``QueueEvents`` connections (suffix ``:qe``) and anything else are not workers. Counted and
listed the way Node's ``Queue.getWorkers()`` does: one per named connection. BullMQ records
nothing else about a worker (no pid, concurrency or jobs in flight): a row has what
``CLIENT LIST`` says (address, age, idle time) and None for the rest.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Mapping, Sequence

from dashboard.bullmq.replies import as_int
from dashboard.model import WorkerRow
from dashboard.sanitize import from_redis, to_redis

NAMED_WORKER = ":w:"


def node_client_name(prefix: str, queue: str) -> str:
    """The client name Node BullMQ gives a worker of ``queue`` that has no name of its own."""
    return f"{prefix}:{base64.b64encode(to_redis(queue)).decode('ascii')}"


def python_client_name(prefix: str, queue: str) -> str:
    """The client name the official Python port gives its worker connections."""
    return f"{prefix}:{queue}"


def _owners(prefix: str, queues: Sequence[str]) -> dict[str, str]:
    """Worker client name (without ``:w:<name>``) to the queue it works for."""
    owner: dict[str, str] = {}
    for queue in queues:
        owner[python_client_name(prefix, queue)] = queue
        owner[node_client_name(prefix, queue)] = queue  # wins if the two spellings collide
    return owner


def _worker_of(name: str, prefix: str, owner: Mapping[str, str]) -> tuple[str, str | None] | None:
    """``(queue, worker name or None)`` of a worker's client name; None for other clients."""
    if not name.startswith(prefix + ":"):
        return None
    named_at = name.find(NAMED_WORKER, len(prefix) + 1)  # neither queue spelling holds ':'
    base = name if named_at < 0 else name[:named_at]
    queue = owner.get(base)
    if queue is None:
        return None
    return queue, None if named_at < 0 else name[named_at + len(NAMED_WORKER) :]


def count_workers(
    clients: Iterable[Mapping[str, str]], prefix: str, queues: Sequence[str]
) -> dict[str, int]:
    """Connected worker connections per queue (every queue of ``queues`` is in the result)."""
    owner = _owners(prefix, queues)
    counts = dict.fromkeys(queues, 0)
    for client in clients:
        found = _worker_of(str(client.get("name") or ""), prefix, owner)
        if found is not None:
            counts[found[0]] += 1
    return counts


def host_of(addr: str) -> str:
    """The host part of a ``CLIENT LIST`` address: ``10.0.0.5:6000`` -> ``10.0.0.5``,
    ``[::1]:6000`` -> ``::1``; a unix socket path as it is."""
    host, colon, port = addr.rpartition(":")
    if not colon or not port.isdigit():
        return addr
    return host.removeprefix("[").removesuffix("]") or addr


def worker_rows(
    clients: Iterable[Mapping[str, str | bytes]],
    prefix: str,
    queues: Sequence[str],
    now_ms: int,
) -> list[WorkerRow]:
    """The worker connections of ``queues``, grouped by queue in that order, oldest first.

    ``age`` and ``idle`` (seconds) become start and last-command times counted back from
    ``now_ms``; the id is the connection's address, unique among live connections.
    """
    owner = _owners(prefix, queues)
    rank = {queue: index for index, queue in enumerate(queues)}
    rows: list[WorkerRow] = []
    for client in clients:
        fields = {key: from_redis(value) for key, value in client.items()}
        found = _worker_of(fields.get("name", ""), prefix, owner)
        if found is None:
            continue
        addr = fields.get("addr", "") or f"client {fields.get('id', '?')}"
        rows.append(
            WorkerRow(
                queue=found[0],
                id=addr,
                host=host_of(addr),
                pid=None,
                concurrency=None,
                in_flight=None,
                started_ms=now_ms - 1000 * (as_int(fields.get("age")) or 0),
                last_beat_ms=now_ms - 1000 * (as_int(fields.get("idle")) or 0),
                expires_ms=None,
                restarts=None,
                name=found[1],
            )
        )
    rows.sort(key=lambda row: (rank[row.queue], row.started_ms, row.id))
    return rows
