"""The invariant check after each test (``support.invariant_check``) and the flow rules of the
checker (``support.invariants``): what each finds, and that a test fails when it should."""

from __future__ import annotations

import ast
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from support.invariant_check import check_server, queues_on
from support.invariant_plugin import DELIBERATE_DAMAGE, is_checked
from support.invariants import assert_invariants, check_invariants
from support.server import FaultServer, ServerFactory
from support.workers import running_worker, wait_until

from engine import FlowProducer, Job, Queue
from engine.keys import QueueKeys

pytest_plugins = ["pytester"]

TESTS_DIR = Path(__file__).resolve().parent


@pytest.fixture
async def flows(fresh_server: FaultServer) -> AsyncIterator[aioredis.Redis]:
    """A private server holding one flow: parent ``p`` in ``parents`` waits for ``a`` (done,
    same queue) and for ``b`` and ``c`` (in ``kids``, not run yet)."""
    async with FlowProducer(fresh_server.url) as producer:
        await producer.add(
            {
                "name": "parent",
                "queue": "parents",
                "opts": {"job_id": "p"},
                "children": [
                    {"name": "a", "queue": "parents", "opts": {"job_id": "a"}},
                    {"name": "b", "queue": "kids", "opts": {"job_id": "b"}},
                    {"name": "c", "queue": "kids", "opts": {"job_id": "c"}},
                ],
            }
        )

    async def done(job: Job) -> str:
        return "ok"

    async with (
        Queue("parents", fresh_server.url) as parents,
        running_worker("parents", done, fresh_server.url, block_timeout=0.2),
    ):

        async def a_done() -> bool:
            return await parents.get_job_state("a") == "completed"

        await wait_until(a_done)
    client = aioredis.Redis.from_url(fresh_server.url, decode_responses=True)
    try:
        yield client
    finally:
        await client.aclose()


PARENTS, KIDS = QueueKeys("parents"), QueueKeys("kids")


async def test_a_flow_half_way_is_clean(flows: aioredis.Redis) -> None:
    await assert_invariants(flows, PARENTS, waiting_children=1, completed=1)
    await assert_invariants(flows, KIDS, wait=2)


@pytest.mark.parametrize(
    ("damage", "queue", "rule"),
    [
        ("forget_child", KIDS, "unfinished child of a flow not pending on its parent"),
        ("dangling", PARENTS, "pending child of a parent does not exist"),
        ("other_parent", PARENTS, "pending child of a parent points to another parent"),
        ("done_pending", PARENTS, "child completed but still pending on its parent"),
        ("kid_done_pending", PARENTS, "child completed but still pending on its parent"),
        ("stuck", PARENTS, "waiting for children with no pending child"),
        ("no_parent", KIDS, "unfinished child of a flow whose parent does not exist"),
    ],
)
async def test_each_kind_of_flow_damage_is_reported(
    flows: aioredis.Redis, damage: str, queue: QueueKeys, rule: str
) -> None:
    deps = PARENTS.dependencies("p")
    if damage == "forget_child":
        await flows.srem(deps, KIDS.job("b"))
    elif damage == "dangling":
        await flows.sadd(deps, KIDS.job("gone"))
    elif damage == "other_parent":
        await flows.hset(KIDS.job("b"), "parent", PARENTS.job("a"))
    elif damage == "done_pending":
        await flows.sadd(deps, PARENTS.job("a"))
    elif damage == "kid_done_pending":  # a child of another queue, seen from the parent's side
        await flows.lrem(KIDS.wait, 0, "c")
        await flows.hset(KIDS.job("c"), mapping={"finished_on": 1, "returnvalue": "1"})
        await flows.zadd(KIDS.completed, {"c": 1})
        await flows.hset(KIDS.counters, "completed", 1)
    elif damage == "stuck":
        await flows.delete(deps)
    elif damage == "no_parent":
        await flows.hset(KIDS.job("b"), "parent", PARENTS.job("nobody"))
    report = await check_invariants(flows, queue)
    assert any(v.startswith(rule) for v in report.violations), report.violations


async def test_every_queue_of_a_private_server_is_found_whatever_its_prefix(
    fresh_server: FaultServer,
) -> None:
    async with (
        Queue("plain", fresh_server.url) as plain,
        Queue("other", fresh_server.url, prefix="acme") as other,
    ):
        await plain.add("j")
        job = await other.add("j")
        await other.client.set("not-a-queue", 1)
        await other.client.set("bull:{x}", 1)
        found = await queues_on(other.client)
        assert [(k.prefix, k.queue) for k in found] == [("acme", "other"), ("corral", "plain")]
        assert await check_server(fresh_server.url, None) == []
        await other.client.delete(other.keys.job(job.id))
        (line,) = await check_server(fresh_server.url, None)
        assert line.startswith(f"{fresh_server.url} acme:{{other}}: in a state but no job hash")


async def test_on_a_shared_server_only_the_named_queues_that_exist_are_checked(
    server_factory: ServerFactory,
) -> None:
    shared = server_factory()
    async with Queue("broken", shared.url) as broken:
        job = await broken.add("j")
        await broken.client.delete(broken.keys.job(job.id))
        assert await check_server(shared.url, [QueueKeys("mine"), QueueKeys("absent")]) == []
        assert len(await check_server(shared.url, [QueueKeys("broken")])) == 1


INNER_CONFTEST = """
    from collections.abc import Iterator

    import pytest
    from support.invariant_check import check_after_test, register_marker, watch_queues

    from engine.server import EmbeddedServer


    def pytest_configure(config):
        register_marker(config)


    @pytest.fixture(scope="session")
    def server() -> Iterator[EmbeddedServer]:
        with EmbeddedServer() as shared:
            yield shared


    @pytest.fixture(autouse=True)
    def watch(request, monkeypatch):
        watch_queues(request, monkeypatch)


    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_call(item):
        result = yield
        check_after_test(item)
        return result
"""

INNER_TESTS = """
    import pytest
    from engine.keys import QueueKeys
    from engine.server import EmbeddedServer


    def orphan(server, keys):
        client = server.client()
        fields = {"name": "n", "data": "{}", "opts": "{}", "timestamp": 1}
        client.hset(keys.job("1"), mapping=fields)
        client.close()


    @pytest.fixture
    def own():
        with EmbeddedServer() as started:
            yield started


    def test_broken_on_its_own_server(own):
        orphan(own, QueueKeys("q", "custom"))


    @pytest.mark.no_invariant_check(reason="leaves an orphan on purpose")
    def test_opted_out(own):
        orphan(own, QueueKeys("q"))


    def test_failed_already(own):
        orphan(own, QueueKeys("q"))
        assert False, "the test's own failure"


    def test_damage_on_the_shared_server_left_for_later_tests(server):
        client = server.client()  # keys written by hand: this test names no queue
        client.hset("corral:{left-behind}:job:1", "name", "n")
        client.hset("corral:{left-behind}:meta", "version", "1")
        client.close()


    def test_clean_on_the_shared_server(server):
        keys = QueueKeys("mine")
        client = server.client()
        client.lpush(keys.wait, "1")
        client.hset(keys.job("1"), mapping={"name": "n", "data": "{}", "opts": "{}",
                                            "timestamp": 1})
        client.close()


    def test_named_queue_broken_on_the_shared_server(server):
        keys = QueueKeys("named")
        client = server.client()
        client.lpush(keys.wait, "1")
        client.close()
"""


def test_the_check_fails_a_test_that_leaves_broken_queues(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTHONPATH", str(TESTS_DIR))
    pytester.makeconftest(textwrap.dedent(INNER_CONFTEST))
    pytester.makepyfile(test_inner=textwrap.dedent(INNER_TESTS))
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:randomly")
    result.assert_outcomes(passed=3, failed=3)
    out = result.stdout.str()
    assert "FAILED test_inner.py::test_broken_on_its_own_server" in out
    assert "custom:{q}: job hash but in no state: 1" in out
    assert "FAILED test_inner.py::test_failed_already - AssertionError: the test's own" in out
    assert "FAILED test_inner.py::test_named_queue_broken_on_the_shared_server" in out
    assert "corral:{named}: in a state but no job hash: 1" in out
    assert "left-behind" not in out


@pytest.mark.parametrize("test_id", sorted(DELIBERATE_DAMAGE))
def test_each_opt_out_names_a_checked_test_that_exists(test_id: str) -> None:
    """A renamed test would silently lose its opt-out (and then fail the check): catch it."""
    file, function = test_id.split("::")
    path = TESTS_DIR / file
    assert is_checked(path), f"{file} is not checked after each test: no opt-out needed"
    names = {
        node.name
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
    }
    assert function in names, f"{function} is not in {file}"


def test_the_checked_modules() -> None:
    assert is_checked(TESTS_DIR / "reliability" / "test_server_crashes.py")
    assert is_checked(TESTS_DIR / "engine" / "test_worker_processes.py")
    assert is_checked(TESTS_DIR / "engine" / "test_flows_run.py")
    assert not is_checked(TESTS_DIR / "engine" / "test_transitions.py")
    assert not is_checked(TESTS_DIR / "dashboard" / "test_app.py")
    assert not is_checked(TESTS_DIR / "test_invariants_fixture.py")
