"""Which BullMQ workers are connected, from ``CLIENT LIST``: Node names a worker's connections
``<prefix>:<base64(queue)>`` (plus ``:w:<worker name>``), the Python port ``<prefix>:<queue>``.

``QueueEvents`` connections (suffix ``:qe``) and anything else are not workers. Counted the way
Node's ``Queue.getWorkersCount()`` counts: one per named connection.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Mapping, Sequence

NAMED_WORKER = ":w:"


def node_client_name(prefix: str, queue: str) -> str:
    """The client name Node BullMQ gives a worker of ``queue`` that has no name of its own."""
    return f"{prefix}:{base64.b64encode(queue.encode()).decode('ascii')}"


def python_client_name(prefix: str, queue: str) -> str:
    """The client name the official Python port gives its worker connections."""
    return f"{prefix}:{queue}"


def count_workers(
    clients: Iterable[Mapping[str, str]], prefix: str, queues: Sequence[str]
) -> dict[str, int]:
    """Connected worker connections per queue (every queue of ``queues`` is in the result)."""
    owner: dict[str, str] = {}
    for queue in queues:
        owner[python_client_name(prefix, queue)] = queue
        owner[node_client_name(prefix, queue)] = queue  # wins if the two spellings collide
    counts = dict.fromkeys(queues, 0)
    start = len(prefix) + 1
    for client in clients:
        name = str(client.get("name") or "")
        if not name.startswith(prefix + ":"):
            continue
        named_at = name.find(NAMED_WORKER, start)  # neither spelling of the queue holds ':'
        base = name if named_at < 0 else name[:named_at]
        owning = owner.get(base)
        if owning is not None:
            counts[owning] += 1
    return counts
