"""``python -m support.flow_adder URL QUEUE OTHER ADDS CONNECTIONS``: add the same flow (a root
with a custom id and three children in another queue) ADDS times over CONNECTIONS concurrent
connections, then print one line per add: the root id and whether it was a duplicate."""

from __future__ import annotations

import asyncio
import sys

from redis.asyncio import BlockingConnectionPool, Redis

from engine import FlowProducer


def tree(queue: str, other: str) -> dict[str, object]:
    """The flow every process adds."""
    return {
        "name": "parent",
        "queue": queue,
        "opts": {"job_id": "nightly-report"},
        "children": [{"name": "part", "queue": other, "data": {"value": i}} for i in range(3)],
    }


async def main(url: str, queue: str, other: str, adds: int, connections: int) -> None:
    """Run the adds and print their results."""
    clients = [
        Redis.from_pool(
            BlockingConnectionPool.from_url(url, max_connections=1, decode_responses=True)
        )
        for _ in range(connections)
    ]  # one connection each
    producers = [FlowProducer(client) for client in clients]
    try:
        results = await asyncio.gather(
            *(producers[i % connections].add(tree(queue, other)) for i in range(adds))
        )
    finally:
        for client in clients:
            await client.aclose()
    for node in results:
        print(node.ref.id, int(node.duplicate), len(node.children))


if __name__ == "__main__":
    url, queue, other, adds, connections = sys.argv[1:6]
    asyncio.run(main(url, queue, other, int(adds), int(connections)))
