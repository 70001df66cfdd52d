"""Circuit breaker (protocol §17) driven through the scripts and the Queue API on a real server:
the window and its threshold, the gate while open, probes in half-open, closing, reopening,
and the operator's overrides. Worker processes are in test_breaker_processes.py."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
from support.invariants import assert_invariants
from support.streams import stream_events
from support.workers import wait_until

from engine import Breaker, InvalidJobOptions, Queue, commands
from engine.commands import Lease, Taken
from engine.keys import QueueKeys
from engine.options import Retention
from engine.scripts import ScriptRegistry

LEASE = Lease("tok", 30_000, "w1", 0)


def lease(count: int) -> Lease:
    return Lease(LEASE.token_base, LEASE.lock_ms, LEASE.worker_id, count)


@pytest.fixture
async def queue(redis_url: str, queue_name: str) -> AsyncIterator[Queue]:
    async with Queue(queue_name, redis_url) as q:
        yield q


@pytest.fixture
def keys(queue_name: str) -> QueueKeys:
    return QueueKeys(queue_name)


@pytest.fixture
def scripts(redis: aioredis.Redis) -> ScriptRegistry:
    return ScriptRegistry(redis)


async def take(scripts: ScriptRegistry, keys: QueueKeys, count: int) -> Taken:
    return await commands.move_to_active(scripts, keys, lease(count))


async def finish(
    scripts: ScriptRegistry, keys: QueueKeys, taken: Taken, ok: bool, retry_delay: int = -1
) -> None:
    for job in taken.jobs:
        if ok:
            await commands.complete_job(scripts, keys, job.id, job.token, "null", Retention())
        else:
            await commands.fail_job(
                scripts, keys, job.id, job.token, "Boom", "[]", retry_delay, Retention()
            )


async def run(
    queue: Queue, scripts: ScriptRegistry, keys: QueueKeys, n: int, ok: bool
) -> list[str]:
    """Add ``n`` jobs, take them and finish them all one way; returns their ids."""
    jobs = await queue.add_bulk([("call", {"i": i}) for i in range(n)])
    taken = await take(scripts, keys, n)
    assert len(taken.jobs) == n
    await finish(scripts, keys, taken, ok)
    return [j.id for j in jobs]


async def breaker_events(redis: aioredis.Redis, queue: str) -> list[tuple[str, str]]:
    return [(e["state"], e.get("by", "")) for e in await stream_events(redis, queue, "breaker")]


# ---- settings ------------------------------------------------------------------------------


async def test_settings_are_stored_with_the_queue_and_read_back(queue: Queue) -> None:
    assert await queue.get_breaker() is None
    settings = Breaker(failure_rate=0.25, min_calls=4, window_ms=5_000, cooldown_ms=700, probes=2)
    assert await queue.set_breaker(settings) is True
    state = await queue.get_breaker()
    assert state is not None
    assert state.settings == settings
    assert (state.state, state.calls, state.failures, state.trips) == ("closed", 0, 0, 0)
    assert await queue.set_breaker(Breaker()) is False  # replaced
    state = await queue.get_breaker()
    assert state is not None and state.settings == Breaker()


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("failure_rate", 0, "failure_rate=0"),
        ("failure_rate", 1.5, "failure_rate=1.5"),
        ("failure_rate", True, "failure_rate=True"),
        ("min_calls", 0, "min_calls=0"),
        ("window_ms", 50, "window_ms=50"),
        ("cooldown_ms", "1s", "cooldown_ms='1s'"),
        ("probes", 0, "probes=0"),
    ],
)
def test_bad_settings_name_the_field(field: str, value: object, expected: str) -> None:
    with pytest.raises(InvalidJobOptions, match=expected):
        Breaker(**{field: value})  # type: ignore[arg-type]


async def test_set_breaker_refuses_anything_but_a_breaker(queue: Queue) -> None:
    with pytest.raises(InvalidJobOptions, match="expected a Breaker"):
        await queue.set_breaker({"failure_rate": 0.5})  # type: ignore[arg-type]


# ---- the window ----------------------------------------------------------------------------


async def test_a_queue_without_a_breaker_counts_nothing(
    queue: Queue, scripts: ScriptRegistry, keys: QueueKeys, redis: aioredis.Redis
) -> None:
    await run(queue, scripts, keys, 5, ok=False)
    assert not await redis.exists(keys.breaker_window)
    assert await redis.hget(keys.meta, "tripped") is None


async def test_failures_below_min_calls_or_below_the_rate_do_not_trip(
    queue: Queue, scripts: ScriptRegistry, keys: QueueKeys, redis: aioredis.Redis
) -> None:
    await queue.set_breaker(Breaker(failure_rate=0.5, min_calls=10, window_ms=60_000))
    await run(queue, scripts, keys, 9, ok=False)  # 9 of 9 failed, but fewer than min_calls
    state = await queue.get_breaker()
    assert state is not None and (state.state, state.calls, state.failures) == ("closed", 9, 9)
    assert await queue.reset_breaker() is False  # it was closed; the window starts afresh
    await run(queue, scripts, keys, 10, ok=True)
    await run(queue, scripts, keys, 9, ok=False)  # at most 9 of 19: under half
    state = await queue.get_breaker()
    assert state is not None and (state.state, state.calls, state.failures) == ("closed", 19, 9)
    assert await breaker_events(redis, queue.name) == []


async def test_reaching_the_rate_opens_the_breaker_and_no_job_is_taken(
    queue: Queue, scripts: ScriptRegistry, keys: QueueKeys, redis: aioredis.Redis
) -> None:
    await queue.set_breaker(Breaker(failure_rate=0.5, min_calls=4, cooldown_ms=60_000))
    await run(queue, scripts, keys, 2, ok=True)
    await run(queue, scripts, keys, 2, ok=False)  # 2 of 4 failed: 0.5 reaches the rate
    state = await queue.get_breaker()
    assert state is not None
    assert state.state == "open" and state.trips == 1
    assert state.reason == "2 of 4 calls failed in the last 60000 ms"
    assert state.until is not None and state.since is not None
    assert state.until - state.since == 60_000
    events = await stream_events(redis, queue.name, "breaker")
    assert [(e["state"], e["by"], e["failures"], e["calls"]) for e in events] == [
        ("open", "breaker", "2", "4")
    ]
    # the failing job's events come first, then the trip
    names = [e["event"] for e in await stream_events(redis, queue.name)]
    assert names[-2:] == ["failed", "breaker"]

    await queue.add("call", {})
    taken = await take(scripts, keys, 10)
    assert taken.jobs == []
    assert 59_000 <= taken.next_delay_ms <= 60_000  # the worker wakes when probes may start
    assert (await queue.get_counts("wait"))["wait"] == 1
    assert await queue.is_paused() is False  # the operator's flag is untouched
    await assert_invariants(redis, queue.name)


async def test_a_success_that_reaches_min_calls_can_trip(
    queue: Queue, scripts: ScriptRegistry, keys: QueueKeys
) -> None:
    await queue.set_breaker(Breaker(failure_rate=0.5, min_calls=4, cooldown_ms=60_000))
    await run(queue, scripts, keys, 3, ok=False)
    await run(queue, scripts, keys, 1, ok=True)  # 3 of 4 failed once the 4th call is in
    state = await queue.get_breaker()
    assert state is not None and state.state == "open"


async def test_retried_attempts_count_as_failures(
    queue: Queue, scripts: ScriptRegistry, keys: QueueKeys
) -> None:
    await queue.set_breaker(Breaker(failure_rate=1.0, min_calls=3, cooldown_ms=60_000))
    await queue.add("call", {}, attempts=5)
    for _ in range(3):
        taken = await take(scripts, keys, 1)
        await finish(scripts, keys, taken, ok=False, retry_delay=0)
    state = await queue.get_breaker()
    assert state is not None and state.state == "open"
    assert (await queue.get_counts("wait"))["wait"] == 1  # its retry waits for the probes


async def test_failures_older_than_the_window_fall_out_of_it(
    queue: Queue, scripts: ScriptRegistry, keys: QueueKeys
) -> None:
    await queue.set_breaker(Breaker(failure_rate=0.5, min_calls=3, window_ms=1_000))
    await run(queue, scripts, keys, 2, ok=False)

    async def forgotten() -> bool:
        state = await queue.get_breaker()
        return state is not None and state.calls == 0

    await wait_until(forgotten, within=5)
    await run(queue, scripts, keys, 1, ok=False)  # 1 of 1 in the window: fewer than 3 calls
    state = await queue.get_breaker()
    assert state is not None and (state.state, state.calls) == ("closed", 1)


async def test_outcomes_while_open_are_not_counted(
    queue: Queue, scripts: ScriptRegistry, keys: QueueKeys, redis: aioredis.Redis
) -> None:
    await queue.set_breaker(Breaker(failure_rate=1.0, min_calls=2, cooldown_ms=60_000))
    await queue.add_bulk([("call", {}) for _ in range(4)])
    taken = await take(scripts, keys, 4)  # all four in flight when it trips
    await finish(scripts, keys, taken, ok=False)
    state = await queue.get_breaker()
    assert state is not None and state.state == "open" and state.trips == 1
    assert not await redis.exists(keys.breaker_window)
    assert await breaker_events(redis, queue.name) == [("open", "breaker")]


# ---- half-open -----------------------------------------------------------------------------


async def trip(queue: Queue, scripts: ScriptRegistry, keys: QueueKeys, cooldown_ms: int) -> None:
    await queue.set_breaker(
        Breaker(failure_rate=1.0, min_calls=2, cooldown_ms=cooldown_ms, probes=2)
    )
    await run(queue, scripts, keys, 2, ok=False)
    state = await queue.get_breaker()
    assert state is not None and state.state == "open"


async def wait_cooldown(queue: Queue) -> None:
    state = await queue.get_breaker()
    assert state is not None and state.until is not None
    seconds, micros = await queue.client.time()
    left = state.until - (int(seconds) * 1000 + int(micros) // 1000)
    await asyncio.sleep(max(left, 0) / 1000 + 0.05)


async def test_after_the_cooldown_exactly_the_probes_are_taken(
    queue: Queue, scripts: ScriptRegistry, keys: QueueKeys, redis: aioredis.Redis
) -> None:
    await trip(queue, scripts, keys, cooldown_ms=300)
    await queue.add_bulk([("call", {"i": i}) for i in range(6)])
    await wait_cooldown(queue)
    first = await take(scripts, keys, 1)
    second = await take(scripts, keys, 10)
    assert len(first.jobs) == 1 and len(second.jobs) == 1  # 2 probes, whoever asks
    assert (await take(scripts, keys, 10)).jobs == []
    state = await queue.get_breaker()
    assert state is not None
    assert (state.state, state.probes_left, state.probes_passed) == ("half-open", 0, 0)
    assert state.reason == "cool-down over"
    half_open = (await stream_events(redis, queue.name, "breaker"))[-1]
    assert (half_open["state"], half_open["probes"]) == ("half-open", "2")
    for job in (*first.jobs, *second.jobs):
        assert job.fields["probe"] == str(state.until)


async def test_probes_that_succeed_close_the_breaker(
    queue: Queue, scripts: ScriptRegistry, keys: QueueKeys, redis: aioredis.Redis
) -> None:
    await trip(queue, scripts, keys, cooldown_ms=300)
    await queue.add_bulk([("call", {"i": i}) for i in range(6)])
    await wait_cooldown(queue)
    probes = await take(scripts, keys, 10)
    assert len(probes.jobs) == 2
    await finish(scripts, keys, Taken(probes.jobs[:1], -1), ok=True)
    state = await queue.get_breaker()
    assert state is not None and (state.state, state.probes_passed) == ("half-open", 1)
    await redis.delete(keys.marker)
    await finish(scripts, keys, Taken(probes.jobs[1:], -1), ok=True)
    assert await redis.zscore(keys.marker, "0") == 0  # idle workers are woken
    state = await queue.get_breaker()
    assert state is not None and state.state == "closed"
    assert state.reason == "2 probe job(s) succeeded" and state.calls == 0
    assert await breaker_events(redis, queue.name) == [
        ("open", "breaker"),
        ("half-open", ""),
        ("closed", "breaker"),
    ]
    assert len((await take(scripts, keys, 10)).jobs) == 4  # the rest run at once


async def test_a_failed_probe_opens_the_breaker_again(
    queue: Queue, scripts: ScriptRegistry, keys: QueueKeys, redis: aioredis.Redis
) -> None:
    await trip(queue, scripts, keys, cooldown_ms=300)
    await queue.add_bulk([("call", {"i": i}) for i in range(6)])
    await wait_cooldown(queue)
    probes = await take(scripts, keys, 10)
    await finish(scripts, keys, Taken(probes.jobs[:1], -1), ok=False)
    state = await queue.get_breaker()
    assert state is not None and (state.state, state.trips) == ("open", 2)
    assert state.reason == f"probe job {probes.jobs[0].id} failed"
    assert (await take(scripts, keys, 10)).jobs == []
    # the other probe finishing now is not counted: the breaker stays open
    await finish(scripts, keys, Taken(probes.jobs[1:], -1), ok=True)
    state = await queue.get_breaker()
    assert state is not None and state.state == "open"
    assert [s for s, _ in await breaker_events(redis, queue.name)] == [
        "open",
        "half-open",
        "open",
    ]


async def test_a_round_without_a_verdict_hands_out_new_probes(
    queue: Queue, scripts: ScriptRegistry, keys: QueueKeys, redis: aioredis.Redis
) -> None:
    """A probe whose worker died never reports: after another cool-down, a new round starts,
    and the old probe's late result does not count."""
    await trip(queue, scripts, keys, cooldown_ms=300)
    await queue.add_bulk([("call", {"i": i}) for i in range(6)])
    await wait_cooldown(queue)
    old = await take(scripts, keys, 10)
    await wait_cooldown(queue)
    new = await take(scripts, keys, 10)
    assert len(new.jobs) == 2
    state = await queue.get_breaker()
    assert state is not None and state.reason == "no verdict from the last probes"
    await finish(scripts, keys, old, ok=False)  # stale probes: ignored
    state = await queue.get_breaker()
    assert state is not None and state.state == "half-open"
    await finish(scripts, keys, new, ok=True)
    state = await queue.get_breaker()
    assert state is not None and state.state == "closed"


# ---- operator ------------------------------------------------------------------------------


async def test_reset_closes_an_open_breaker_and_resume_does_not(
    queue: Queue, scripts: ScriptRegistry, keys: QueueKeys, redis: aioredis.Redis
) -> None:
    await trip(queue, scripts, keys, cooldown_ms=60_000)
    await queue.add_bulk([("call", {"i": i}) for i in range(3)])
    assert await queue.resume() is False  # not paused by an operator: nothing to resume
    assert (await take(scripts, keys, 10)).jobs == []
    assert await queue.reset_breaker() is True
    assert await queue.reset_breaker() is False
    state = await queue.get_breaker()
    assert state is not None and (state.state, state.reason) == ("closed", "reset by operator")
    assert await breaker_events(redis, queue.name) == [("open", "breaker"), ("closed", "operator")]
    assert len((await take(scripts, keys, 10)).jobs) == 3


async def test_an_operator_pause_outlasts_the_breaker(
    queue: Queue, scripts: ScriptRegistry, keys: QueueKeys, redis: aioredis.Redis
) -> None:
    await trip(queue, scripts, keys, cooldown_ms=60_000)
    await queue.add_bulk([("call", {"i": i}) for i in range(3)])
    assert await queue.pause() is True
    await queue.reset_breaker()
    assert (await take(scripts, keys, 10)).jobs == []  # still paused by the operator
    assert (await queue.get_counts("paused"))["paused"] == 3
    await queue.resume()
    assert len((await take(scripts, keys, 10)).jobs) == 3
    await assert_invariants(redis, queue.name)


async def test_resume_lifts_the_pause_but_an_open_breaker_still_holds_the_jobs(
    queue: Queue, scripts: ScriptRegistry, keys: QueueKeys
) -> None:
    await trip(queue, scripts, keys, cooldown_ms=60_000)
    await queue.pause()
    await queue.add_bulk([("call", {"i": i}) for i in range(3)])
    assert await queue.resume() is True
    assert (await queue.get_counts("wait"))["wait"] == 3
    assert (await take(scripts, keys, 10)).jobs == []
    state = await queue.get_breaker()
    assert state is not None and state.state == "open"


async def test_remove_breaker_closes_it_and_forgets_it(
    queue: Queue, scripts: ScriptRegistry, keys: QueueKeys, redis: aioredis.Redis
) -> None:
    await trip(queue, scripts, keys, cooldown_ms=60_000)
    await queue.add("call", {})
    assert await queue.remove_breaker() is True
    assert await queue.remove_breaker() is False
    assert await queue.get_breaker() is None
    meta = [str(f) for f in await redis.hkeys(keys.meta)]
    assert not [f for f in meta if f == "tripped" or f.startswith("breaker")]
    assert await breaker_events(redis, queue.name) == [("open", "breaker"), ("closed", "operator")]
    assert len((await take(scripts, keys, 10)).jobs) == 1
    await run(queue, scripts, keys, 5, ok=False)  # no breaker: nothing trips
    assert await redis.hget(keys.meta, "tripped") is None


async def test_changing_the_window_starts_it_afresh(
    queue: Queue, scripts: ScriptRegistry, keys: QueueKeys
) -> None:
    await queue.set_breaker(Breaker(failure_rate=0.9, min_calls=10, window_ms=60_000))
    await run(queue, scripts, keys, 3, ok=False)
    await queue.set_breaker(Breaker(failure_rate=0.8, min_calls=10, window_ms=60_000))
    state = await queue.get_breaker()
    assert state is not None and state.calls == 3  # same window: kept
    await queue.set_breaker(Breaker(failure_rate=0.8, min_calls=10, window_ms=30_000))
    state = await queue.get_breaker()
    assert state is not None and state.calls == 0
