"""R12: Corral does not support Redis Cluster. A cluster node (``cluster_enabled:1``, here a
real ``valkey-server --cluster-enabled yes`` serving every slot, so that writes would work) is
refused when the producer, the worker, the flow producer, ``corral worker`` or ``corral dash``
connects, with an
error naming Redis Cluster and what to use instead, and nothing is written."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time
from typing import Any

import pytest
import redis.asyncio as aioredis
from support.server import FaultServer, ServerFactory
from support.workers import WorkerProcess

from engine import ClusterNotSupported, FlowProducer, Queue, UnsafeServerConfig, Worker

pytestmark = pytest.mark.timeout(60)

WRITES = ("evalsha", "eval", "script|load", "hset", "set", "zadd", "lpush", "xadd", "del")


@pytest.fixture
def cluster_node(server_factory: ServerFactory) -> FaultServer:
    """A one-node cluster that owns all 16,384 slots (``cluster_state:ok``). Its cluster bus
    gets a free port of its own (the default, port + 10,000, may be taken or out of range)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        bus_port = probe.getsockname()[1]
    cluster_args = ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"]
    node = server_factory(extra_args=[*cluster_args, "--cluster-port", str(bus_port)])
    client = node.client()
    try:
        client.execute_command("CLUSTER", "ADDSLOTSRANGE", 0, 16383)  # type: ignore[no-untyped-call]
        deadline = time.monotonic() + 10
        while "cluster_state:ok" not in str(client.execute_command("CLUSTER", "INFO")):  # type: ignore[no-untyped-call]
            assert time.monotonic() < deadline, "the cluster node did not come up"
            time.sleep(0.05)
        client.set("probe-{q}", "1")  # a write works: the refusals below are Corral's own
        client.delete("probe-{q}")
        client.config_resetstat()
    finally:
        client.close()
    return node


def _assert_clear(message: str) -> None:
    assert "Redis Cluster" in message and "cluster_enabled:1" in message, message
    assert "does not support" in message, message
    assert "standalone server" in message, message


async def _assert_nothing_written(node: FaultServer) -> None:
    client = aioredis.Redis(host="127.0.0.1", port=node.port, decode_responses=True)
    try:
        assert await client.dbsize() == 0
        stats: dict[str, Any] = await client.info("commandstats")
        ran = {name.removeprefix("cmdstat_") for name in stats}
        assert not ran & set(WRITES), sorted(ran)
    finally:
        await client.aclose()


def _tree(queue: str) -> dict[str, Any]:
    return {
        "name": "parent",
        "queue": queue,
        "data": {},
        "children": [{"name": "child", "queue": queue, "data": {}}],
    }


async def test_r12_queue_refuses_a_cluster_node(cluster_node: FaultServer, queue_name: str) -> None:
    async with Queue(queue_name, cluster_node.url) as queue:
        for _ in range(2):  # and again on the next call: nothing gets through
            with pytest.raises(ClusterNotSupported) as refused:
                await queue.add("job", {"n": 1})
            _assert_clear(str(refused.value))
        with pytest.raises(ClusterNotSupported):
            await queue.add_bulk([("job", {"n": 2}, {})])
    assert issubclass(ClusterNotSupported, UnsafeServerConfig)  # handled as the other refusals
    await _assert_nothing_written(cluster_node)


async def test_r12_worker_refuses_a_cluster_node(
    cluster_node: FaultServer, queue_name: str
) -> None:
    worker = Worker(queue_name, _never_called, cluster_node.url, block_timeout=0.5)
    with pytest.raises(ClusterNotSupported) as refused:
        await asyncio.wait_for(worker.run(), 20)
    _assert_clear(str(refused.value))
    await asyncio.wait_for(worker.close(), 5)  # a refused worker closes at once
    await _assert_nothing_written(cluster_node)


async def test_r12_flow_producer_refuses_a_cluster_node(
    cluster_node: FaultServer, queue_name: str
) -> None:
    async with FlowProducer(cluster_node.url) as flows:
        with pytest.raises(ClusterNotSupported) as refused:
            await flows.add(_tree(queue_name))  # type: ignore[arg-type]
        _assert_clear(str(refused.value))
        with pytest.raises(ClusterNotSupported):
            await flows.add_bulk([_tree(queue_name)])  # type: ignore[list-item]
    await _assert_nothing_written(cluster_node)


async def test_r12_corral_worker_exits_naming_the_cluster(
    cluster_node: FaultServer, queue_name: str, procs: list[WorkerProcess]
) -> None:
    worker = WorkerProcess("support.jobs:ledger_job", queue_name, cluster_node.url)
    procs.append(worker)
    status = await asyncio.to_thread(worker.wait, 30)
    output = worker.output()
    assert status == 2, output
    assert "corral worker: the server is a Redis Cluster node" in output, output
    _assert_clear(output)
    assert "Traceback" not in output, output
    await _assert_nothing_written(cluster_node)


@pytest.mark.parametrize(
    "mode", [[], ["--read-only"], ["--bullmq"]], ids=["write", "read-only", "bullmq"]
)
async def test_r12_corral_dash_exits_naming_the_cluster(
    cluster_node: FaultServer, mode: list[str]
) -> None:
    """``corral dash`` refuses a cluster node before it opens, in every mode and with either
    backend: exit 2, the reason on stderr, nothing drawn and nothing written."""
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "corral", "dash", "--redis", cluster_node.url, *mode],
        capture_output=True,
        text=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert done.stdout == ""  # the app never started
    assert "corral dashboard: the server is a Redis Cluster node" in done.stderr, done.stderr
    assert "does not support Redis Cluster" in done.stderr
    assert "Traceback" not in done.stderr
    await _assert_nothing_written(cluster_node)


async def _never_called(job: Any) -> None:
    raise AssertionError("no job runs on a cluster node")
