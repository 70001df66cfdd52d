"""What ``Queue`` refuses before it writes anything: data that is not plain JSON, payloads over
the limit, bad ids and names, bad options, and a server that may evict jobs."""

from __future__ import annotations

import datetime
import decimal
import math
import tracemalloc
from collections.abc import AsyncIterator
from typing import Any, Protocol

import pytest
import redis.asyncio as aioredis
from support.invariants import assert_invariants

from engine.errors import InvalidJobData, InvalidJobOptions, PayloadTooLarge, UnsafeServerConfig
from engine.options import Backoff
from engine.queue import Queue
from engine.serialization import DEFAULT_MAX_PAYLOAD


@pytest.fixture
async def queue(queue_name: str, redis_url: str) -> AsyncIterator[Queue]:
    async with Queue(queue_name, redis_url) as q:
        yield q


async def keys_left(redis: aioredis.Redis, queue: Queue) -> list[str]:
    return sorted([k async for k in redis.scan_iter(match=queue.keys.base + ":*", count=1000)])


class ServerUnderTest(Protocol):
    """What these tests use of the ``fresh_server`` fixture (a private ``FaultServer``)."""

    @property
    def url(self) -> str: ...

    def config_set(self, name: str, value: str | int | float) -> None: ...


class Opaque:
    pass


def circular() -> dict[str, Any]:
    inner: list[Any] = []
    outer: dict[str, Any] = {"items": inner}
    inner.append(outer)
    return outer


# ---- B3: data that is not plain JSON -------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "path", "words"),
    [
        ({"when": datetime.datetime(2024, 1, 1)}, "['when']", "datetime"),
        ({"tags": {"a", "b"}}, "['tags']", "set"),
        ([1, b"raw"], "[1]", "bytes"),
        ({"price": decimal.Decimal("1.50")}, "['price']", "Decimal"),
        ({"deep": [{"obj": Opaque()}]}, "['deep'][0]['obj']", "Opaque"),
        (object(), "", "object"),
        (circular(), "['items'][0]", "circular reference"),
        ({"x": [math.nan]}, "['x'][0]", "nan"),
        ({"x": math.inf}, "['x']", "inf"),
        ({"x": -math.inf}, "['x']", "-inf"),
        ({1: "one"}, "", "key 1 is a int"),
        ({"outer": {None: 1}}, "['outer']", "key None is a NoneType"),
        ({"outer": {(1, 2): "pair"}}, "['outer']", "key (1, 2) is a tuple"),
    ],
    ids=[
        "datetime",
        "set",
        "bytes",
        "decimal",
        "object-nested",
        "object-top",
        "circular",
        "nan",
        "inf",
        "neg-inf",
        "int-key",
        "none-key",
        "tuple-key",
    ],
)
async def test_data_that_is_not_json_is_refused_naming_the_path(
    redis: aioredis.Redis, queue: Queue, data: Any, path: str, words: str
) -> None:
    with pytest.raises(InvalidJobData) as info:
        await queue.add("report", data)

    message = str(info.value)
    assert message.startswith(f"data of job 'report'{path}:"), message
    assert words in message
    assert await keys_left(redis, queue) == []


async def test_add_bulk_with_one_bad_item_writes_nothing(
    redis: aioredis.Redis, queue: Queue
) -> None:
    with pytest.raises(InvalidJobData, match=r"data of job 'b'\['at'\]: datetime"):
        await queue.add_bulk(
            [("a", {"ok": 1}), ("b", {"at": datetime.datetime.now()}), ("c", {"ok": 3})]
        )
    assert await keys_left(redis, queue) == []


async def test_plain_json_round_trips(queue: Queue) -> None:
    data = {"s": "ünïcode ✓", "i": -(2**60), "f": 0.1, "b": True, "n": None, "l": [1, [2, {}]]}
    job = await queue.add("ok", data)
    stored = await queue.get_job(job.id)
    assert stored is not None
    assert stored.data == data
    tupled = await queue.add("ok", {"t": (1, 2)})
    assert tupled.data == {"t": [1, 2]}  # a tuple is stored as a JSON array


# ---- B1: payload size ----------------------------------------------------------------------


async def test_payload_limit_is_inclusive_and_counts_bytes(
    redis: aioredis.Redis, queue_name: str, redis_url: str
) -> None:
    async with Queue(queue_name, redis_url, max_payload=100) as queue:
        assert (await queue.add("fits", "x" * 98)).data == "x" * 98  # '"' + 98 + '"' = 100
        assert (await queue.add("fits", "é" * 49)).data == "é" * 49  # 2 bytes each: 100

        with pytest.raises(PayloadTooLarge) as info:
            await queue.add("big", "x" * 99)
        assert "101 bytes" in str(info.value)
        assert "limit is 100 bytes" in str(info.value)
        assert "'big'" in str(info.value)
        with pytest.raises(PayloadTooLarge, match="102 bytes"):
            await queue.add("big", "é" * 50)
        with pytest.raises(PayloadTooLarge, match=" 101 bytes"):  # the escape takes 2 bytes
            await queue.add("big", "x" * 97 + '"')
        with pytest.raises(PayloadTooLarge):
            await queue.add_bulk([("small", 1), ("big", "x" * 200)])

        assert await queue.get_counts("wait") == {"wait": 2}


async def test_default_payload_limit(redis: aioredis.Redis, queue: Queue) -> None:
    assert queue.max_payload == DEFAULT_MAX_PAYLOAD == 512 * 1024
    at_limit = "x" * (DEFAULT_MAX_PAYLOAD - 2)
    assert (await queue.add("fits", at_limit)).id == "1"

    with pytest.raises(PayloadTooLarge) as info:
        await queue.add("big", at_limit + "x")
    assert f"{DEFAULT_MAX_PAYLOAD + 1} bytes" in str(info.value)
    assert f"limit is {DEFAULT_MAX_PAYLOAD} bytes" in str(info.value)
    assert await queue.get_counts("wait") == {"wait": 1}


B1_PAYLOAD = 100_000_000  # the plan's 100 MB


async def _commands_run(client: aioredis.Redis) -> dict[str, int]:
    """Calls per command the server has run (INFO commandstats), the INFO calls aside."""
    stats = await client.info("commandstats")
    return {name: row["calls"] for name, row in stats.items() if name != "cmdstat_info"}


async def test_a_100_mb_payload_is_refused_before_any_redis_call(
    fresh_server: ServerUnderTest, queue_name: str
) -> None:
    """B1 at the plan's size: ``add()`` of 100 MB refuses it naming the job, the size and the
    limit, before any Redis call: the server (a private one: no other client) runs no command
    meanwhile, and the queue holds only the job added at the limit before. The refusal does
    not serialize the 100 MB: it allocates under 1 MB (tracemalloc)."""
    blob = {"file": "x" * B1_PAYLOAD}
    client = aioredis.Redis.from_url(fresh_server.url, decode_responses=True)
    try:
        async with Queue(queue_name, fresh_server.url) as queue:
            at_limit = await queue.add("fits", "x" * (DEFAULT_MAX_PAYLOAD - 2))
            before = await _commands_run(client)
            tracemalloc.start()
            try:
                with pytest.raises(PayloadTooLarge) as info:
                    await queue.add("upload", blob)
                _, peak = tracemalloc.get_traced_memory()
            finally:
                tracemalloc.stop()
            assert await _commands_run(client) == before
        message, size = str(info.value), B1_PAYLOAD + len('{"file":""}')
        assert "job 'upload'" in message
        assert f" {size} bytes" in message
        assert f"limit is {DEFAULT_MAX_PAYLOAD} bytes" in message
        assert peak < 1_000_000, peak
        await assert_invariants(client, queue_name, wait=1)
        assert await client.hget(queue.keys.job(at_limit.id), "name") == "fits"
    finally:
        await client.aclose()


@pytest.mark.parametrize("bad", [0, -5, "1mb", 1.5])
def test_max_payload_must_be_a_positive_int(queue_name: str, redis_url: str, bad: Any) -> None:
    with pytest.raises(InvalidJobOptions, match="max_payload"):
        Queue(queue_name, redis_url, max_payload=bad)


# ---- B5: ids and names ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "job_id",
    [
        "a:b",
        "123",
        "0",
        "",
        "x" * 10_240,
        "x" * 257,
        "{tag}",
        " lead",
        "trail ",
        "new\nline",
        "nul\x00",
        "*",
        42,
    ],
    ids=[
        "colon",
        "integer",
        "zero",
        "empty",
        "10kb",
        "257",
        "braces",
        "leading-space",
        "trailing-space",
        "newline",
        "nul",
        "star",
        "int",
    ],
)
async def test_bad_custom_job_ids_are_refused(
    redis: aioredis.Redis, queue: Queue, job_id: Any
) -> None:
    with pytest.raises(InvalidJobOptions, match="job_id="):
        await queue.add("j", 1, job_id=job_id)
    assert await keys_left(redis, queue) == []


@pytest.mark.parametrize("job_id", ["x" * 256, "order-1", "1a", "-5", "ünï", "a b", "a*b"])
async def test_good_custom_job_ids_are_kept_as_given(queue: Queue, job_id: str) -> None:
    job = await queue.add("j", 1, job_id=job_id)
    assert job.id == job_id
    assert (await queue.get_job(job_id)) is not None


@pytest.mark.parametrize("name", ["a{b}", "{x}", "has space", "a:b", "", "x" * 201, "tab\t"])
def test_bad_queue_names_are_refused_at_construction(name: str, redis_url: str) -> None:
    with pytest.raises(ValueError, match="queue name"):
        Queue(name, redis_url)


def test_bad_prefix_is_refused(queue_name: str, redis_url: str) -> None:
    with pytest.raises(ValueError, match="prefix"):
        Queue(queue_name, redis_url, prefix="a{b}")


@pytest.mark.parametrize("name", ["", "x" * 257, "line\nbreak", 5])
async def test_bad_job_names_are_refused(redis: aioredis.Redis, queue: Queue, name: Any) -> None:
    with pytest.raises(InvalidJobOptions, match="job name"):
        await queue.add(name, 1)
    assert await keys_left(redis, queue) == []


# ---- B6: options ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"delay": -1}, "delay=-1"),
        ({"delay": 1.5}, "delay=1.5"),
        ({"delay": True}, "delay=True"),
        ({"attempts": 0}, "attempts=0"),
        ({"attempts": "3"}, "attempts='3'"),
        ({"priority": -1}, "priority=-1"),
        ({"priority": 2**21 + 1}, f"priority={2**21 + 1}"),
        ({"lifo": 1}, "lifo=1"),
        ({"lifo": True, "priority": 2}, "lifo=True cannot be combined with a priority"),
        ({"backoff": {"type": "fixed", "delay": 10}}, "backoff="),
        ({"backoff": 1000}, "backoff=1000"),
        ({"retries": 3}, "['retries']"),
        ({"remove_on_complete": {"ttl": 5}}, "remove_on_complete has unknown keys ['ttl']"),
        ({"remove_on_fail": -2}, "remove_on_fail=-2"),
        ({"remove_on_fail": "yes"}, "remove_on_fail='yes'"),
    ],
)
async def test_bad_options_are_refused_naming_the_option(
    redis: aioredis.Redis, queue: Queue, options: dict[str, Any], named: str
) -> None:
    with pytest.raises(InvalidJobOptions) as info:
        await queue.add("j", 1, **options)
    assert named in str(info.value)
    with pytest.raises(InvalidJobOptions):
        await queue.add_bulk([("j", 1, options)])
    assert await keys_left(redis, queue) == []


@pytest.mark.parametrize("jitter", [1.5, -0.1, "0.5", math.nan])
def test_backoff_jitter_must_be_from_0_to_1(jitter: Any) -> None:
    with pytest.raises(InvalidJobOptions, match="jitter"):
        Backoff.fixed(100, jitter=jitter)
    with pytest.raises(InvalidJobOptions, match="jitter"):
        Backoff.exponential(100, jitter=jitter)


def test_backoff_delay_must_be_a_non_negative_int() -> None:
    with pytest.raises(InvalidJobOptions, match="backoff delay"):
        Backoff.fixed(-1)
    with pytest.raises(InvalidJobOptions, match="custom backoff"):
        Backoff("custom")


async def test_good_options_are_stored(queue: Queue) -> None:
    job = await queue.add(
        "j",
        1,
        attempts=5,
        backoff=Backoff.exponential(200, jitter=0.5),
        priority=2**21,
        remove_on_complete={"count": 10, "age": 60},
        remove_on_fail=True,
    )
    assert job.priority == 2**21
    assert job.opts["backoff"] == {"type": "exponential", "delay": 200, "jitter": 0.5}
    assert job.opts["remove_on_complete"] == {"count": 10, "age_ms": 60_000}
    assert job.opts["remove_on_fail"] == {"count": 0, "age_ms": 0}


@pytest.mark.parametrize("max_events", [99, 0, "1000"])
def test_max_events_is_checked(queue_name: str, redis_url: str, max_events: Any) -> None:
    with pytest.raises(InvalidJobOptions, match="max_events"):
        Queue(queue_name, redis_url, max_events=max_events)


# ---- a server that may evict jobs ----------------------------------------------------------


async def test_an_evicting_server_is_refused_unless_allowed(
    fresh_server: ServerUnderTest, queue_name: str
) -> None:
    fresh_server.config_set("maxmemory-policy", "allkeys-lru")
    client = aioredis.Redis.from_url(fresh_server.url, decode_responses=True)
    try:
        async with Queue(queue_name, fresh_server.url) as queue:
            with pytest.raises(UnsafeServerConfig) as info:
                await queue.add("j", 1)
            message = str(info.value)
            assert "'allkeys-lru'" in message
            assert "CONFIG SET maxmemory-policy noeviction" in message
            assert "allow_unsafe_eviction=True" in message
            with pytest.raises(UnsafeServerConfig):
                await queue.add_bulk([("j", 1)])
            with pytest.raises(UnsafeServerConfig):
                await queue.pause()
        assert await client.dbsize() == 0

        async with Queue(queue_name, fresh_server.url, allow_unsafe_eviction=True) as queue:
            job = await queue.add("j", 1)
            assert job.id == "1"
            assert await queue.get_counts("wait") == {"wait": 1}
    finally:
        await client.aclose()
