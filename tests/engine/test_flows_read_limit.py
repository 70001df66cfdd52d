"""``read_flow(..., list_scan_limit=N)``: a waiting child is looked for among N list entries."""

from __future__ import annotations

from engine import FlowProducer, JobRef, JobState, Queue
from engine.flows import read_flow


async def test_list_scan_limit_bounds_the_search_of_a_waiting_child(
    redis_url: str, queue_name: str
) -> None:
    async with FlowProducer(redis_url) as producer:
        root = await producer.add(
            {
                "name": "parent",
                "queue": queue_name,
                "children": [{"name": "c", "queue": queue_name}],
            }
        )
    async with Queue(queue_name, redis_url) as queue:
        await queue.add_bulk([("later", {}) for _ in range(50)])  # in front of the child
        ref = JobRef(queue_name, root.ref.id)
        whole = await read_flow(queue.client, ref, depth=1)
        near = await read_flow(queue.client, ref, depth=1, list_scan_limit=10)
        far = await read_flow(queue.client, ref, depth=1, list_scan_limit=100)
    assert whole is not None and near is not None and far is not None
    for tree in (whole, near, far):
        assert tree.job is not None and tree.job.state is JobState.WAITING_CHILDREN
    states = [tree.children[0].job.state for tree in (whole, near, far)]  # type: ignore[union-attr]
    assert states == [JobState.WAIT, None, JobState.WAIT]
