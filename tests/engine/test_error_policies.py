"""Error policies: ``retry_on`` / ``fail_on`` per queue and per job name, ``HttpError`` (4xx
fail, 429 after Retry-After, 5xx retry, made from a client's response) and per-class backoff,
decided and then run by a worker on the server."""

from __future__ import annotations

import asyncio
import http.client
import itertools
import pickle
import urllib.error
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import pytest
import redis.asyncio as aioredis
from support.policy_jobs import Response, responds
from support.streams import stream_events
from support.workers import running_worker, wait_until

from engine import (
    Backoff,
    ErrorPolicy,
    HttpError,
    InvalidJobOptions,
    Job,
    JobCancelled,
    JobState,
    JobTimeout,
    Queue,
    Retry,
    UnrecoverableError,
)
from engine.errors import parse_retry_after
from engine.policies import retry_delay


def decide(
    exc: BaseException,
    policy: ErrorPolicy | None = None,
    *,
    made: int = 0,
    attempts: int = 5,
    opts: dict[str, Any] | None = None,
    default: Backoff | None = None,
) -> int:
    return retry_delay(
        exc,
        attempts_made=made,
        attempts=attempts,
        opts=opts or {},
        policy=policy,
        default_backoff=default,
    )


# ---- the decision, rule by rule ------------------------------------------------------------


def test_engine_errors_and_fail_on_fail_at_once() -> None:
    policy = ErrorPolicy(fail_on=(KeyError, HttpError), retry_on=(KeyError, ValueError))
    for exc in (JobCancelled("cancelled by a"), UnrecoverableError("no"), KeyError("k")):
        assert decide(exc, policy) == -1
    assert decide(HttpError(503), policy) == -1  # fail_on beats the status rule
    assert decide(ValueError("v"), policy) == 0
    assert decide(LookupError("parent of KeyError"), policy) == -1  # not in retry_on


def test_retry_on_is_an_allowlist_and_retry_is_always_honoured() -> None:
    policy = ErrorPolicy(retry_on=(ConnectionError,))
    assert decide(ConnectionResetError("reset"), policy) == 0  # subclasses match
    assert decide(ValueError("v"), policy) == -1
    assert decide(Retry(delay=700), policy) == 700
    assert decide(JobTimeout("timed out after 1 s"), policy) == -1
    assert decide(JobTimeout("timed out after 1 s")) == 0  # no policy: retried
    assert decide(ConnectionError(), policy, made=4, attempts=5) == -1  # out of attempts


def test_http_errors_by_status() -> None:
    assert decide(HttpError(400)) == -1
    assert decide(HttpError(404, "no such user")) == -1
    assert decide(HttpError(408)) == 0
    assert decide(HttpError(500), default=Backoff.fixed(250)) == 250
    assert decide(HttpError(503, retry_after="7")) == 7000
    assert decide(HttpError(429, retry_after=1.5), default=Backoff.fixed(5)) == 1500
    assert decide(HttpError(429), default=Backoff.fixed(5)) == 5  # no header: the backoff
    assert decide(HttpError(429, retry_after=2), made=4, attempts=5) == -1
    assert str(HttpError(404)) == "404 Not Found"
    assert str(HttpError(502, "upstream down")) == "502 upstream down"
    with pytest.raises(InvalidJobOptions, match="status=42"):
        HttpError(42)


def test_retry_after_header_forms() -> None:
    assert parse_retry_after("120") == 120_000
    assert parse_retry_after(" 0.25 ") == 250
    assert parse_retry_after(-3) == 0
    soon = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    ms = parse_retry_after(soon)
    assert ms is not None and 25_000 <= ms <= 30_000
    past = format_datetime(datetime.now(UTC) - timedelta(days=1), usegmt=True)
    assert parse_retry_after(past) == 0
    for bad in ("soon", "", None, float("nan"), True):
        assert parse_retry_after(bad) is None  # type: ignore[arg-type]


# ---- HttpError from a client's response ----------------------------------------------------


@dataclass(frozen=True)
class RequestsLikeResponse:
    """Shaped as ``requests.Response``: ``status_code``, ``headers`` and ``reason``."""

    status_code: int
    headers: dict[str, str] = field(default_factory=dict)
    reason: str | None = None


@dataclass(frozen=True)
class AiohttpLikeResponse:
    """Shaped as ``aiohttp.ClientResponse``: ``status``, ``headers`` and ``reason``."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    reason: str | None = None


def test_from_response_reads_status_reason_and_retry_after_of_each_client_shape() -> None:
    httpx_like = HttpError.from_response(Response(429, {"Retry-After": "7"}, "Slow Down"))
    assert (httpx_like.status, httpx_like.reason, httpx_like.retry_after_ms) == (
        429,
        "Slow Down",
        7000,
    )
    assert str(httpx_like) == "429 Slow Down" and httpx_like.retryable

    in_30_s = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    requests_like = HttpError.from_response(
        RequestsLikeResponse(503, {"retry-after": in_30_s}, "Service Unavailable")
    )  # a plain dict with a lower-case name: found all the same
    assert requests_like.status == 503 and requests_like.reason == "Service Unavailable"
    assert requests_like.retry_after_ms is not None
    assert 25_000 <= requests_like.retry_after_ms <= 30_000

    aiohttp_like = HttpError.from_response(AiohttpLikeResponse(404, {}, "No Such User"))
    assert str(aiohttp_like) == "404 No Such User"
    assert not aiohttp_like.retryable and aiohttp_like.retry_after_ms is None

    headers = http.client.HTTPMessage()
    headers["Retry-After"] = "2"
    urllib_error = urllib.error.HTTPError("http://127.0.0.1/x", 429, "Too Many", headers, None)
    from_urllib = HttpError.from_response(urllib_error)
    assert (from_urllib.status, from_urllib.reason, from_urllib.retry_after_ms) == (
        429,
        "Too Many",
        2000,
    )


def test_from_response_fills_in_or_overrides_the_reason_and_ignores_a_bad_header() -> None:
    assert str(HttpError.from_response(AiohttpLikeResponse(502))) == "502 Bad Gateway"
    assert str(HttpError.from_response(Response(500), "upstream down")) == "500 upstream down"
    unreadable = HttpError.from_response(Response(429, {"Retry-After": "soon"}))
    assert unreadable.status == 429 and unreadable.retry_after_ms is None
    with pytest.raises(InvalidJobOptions, match=r"from_response\(dict\): expected an HTTP"):
        HttpError.from_response({"status_code": 500})


def test_raise_for_status_raises_only_for_errors() -> None:
    for ok in (Response(200), Response(204), AiohttpLikeResponse(302)):
        assert HttpError.raise_for_status(ok) is ok
    with pytest.raises(HttpError, match=r"^400 Bad Request$") as caught:
        HttpError.raise_for_status(RequestsLikeResponse(400))
    assert not caught.value.retryable
    with pytest.raises(HttpError) as caught:
        HttpError.raise_for_status(Response(429, {"Retry-After": "0.5"}))
    assert caught.value.retry_after_ms == 500


class ApiError(HttpError):
    """A subclass, as an API client library might define."""


def test_http_error_survives_a_pickle_round_trip() -> None:
    """A sandboxed processor's error reaches the worker pickled: it must stay an HttpError."""
    for exc in (HttpError(429, "Slow Down", retry_after="1.5"), ApiError(404)):
        back = pickle.loads(pickle.dumps(exc))
        assert type(back) is type(exc) and str(back) == str(exc)
        assert (back.status, back.reason, back.retry_after_ms) == (
            exc.status,
            exc.reason,
            exc.retry_after_ms,
        )


def test_backoff_per_class_most_specific_first() -> None:
    policy = ErrorPolicy(
        backoff={OSError: Backoff.fixed(100), ConnectionError: Backoff.exponential(1000)}
    )
    job_opts = {"backoff": {"type": "fixed", "delay": 10}}
    assert decide(ConnectionResetError(), policy, made=2, opts=job_opts) == 4000
    assert decide(FileNotFoundError(), policy, opts=job_opts) == 100
    assert decide(ValueError(), policy, opts=job_opts) == 10  # the job's own
    assert decide(ValueError(), policy, default=Backoff.fixed(20)) == 20  # the worker's


def test_name_policy_over_queue_policy() -> None:
    queue = ErrorPolicy(fail_on=(KeyError,), backoff={OSError: Backoff.fixed(100)})
    name = ErrorPolicy(retry_on=(OSError,), backoff={TimeoutError: Backoff.fixed(5)})
    merged = name.over(queue)
    assert merged.fail_on == (KeyError,) and merged.retry_on == (OSError,)
    assert set(merged.backoff) == {OSError, TimeoutError}
    assert name.over(None) is name


def test_bad_policies_are_refused() -> None:
    with pytest.raises(InvalidJobOptions, match="not an exception class"):
        ErrorPolicy(retry_on=(ValueError, "KeyError"))  # type: ignore[arg-type]
    with pytest.raises(InvalidJobOptions, match="expected a Backoff"):
        ErrorPolicy(backoff={ValueError: 100})  # type: ignore[dict-item]
    with pytest.raises(InvalidJobOptions, match="fail_on"):
        ErrorPolicy(fail_on="ValueError")  # type: ignore[arg-type]


# ---- in a worker ---------------------------------------------------------------------------


async def settled(queue: Queue, n: int) -> None:
    async def done() -> bool:
        counts = await queue.get_counts("completed", "failed")
        return counts["completed"] + counts["failed"] >= n

    await wait_until(done, within=20)


async def test_worker_applies_queue_and_job_name_policies(redis_url: str, queue_name: str) -> None:
    async def process(job: Job) -> Any:
        errors: dict[str, BaseException] = {
            "lookup": KeyError("missing"),
            "flaky": ValueError("try again"),
            "charge": ValueError("card declined"),
            "gone": HttpError(404, "no such user"),
            "busy": HttpError(503),
        }
        if job.name == "busy" and job.attempts_started == 3:
            return "served"
        raise errors[job.name]

    policies = {"charge": ErrorPolicy(fail_on=(ValueError,))}
    async with Queue(queue_name, redis_url) as queue:
        ids = {
            name: (await queue.add(name, {}, attempts=3, backoff=Backoff.fixed(10))).id
            for name in ("lookup", "flaky", "charge", "gone", "busy")
        }
        async with running_worker(
            queue_name,
            process,
            redis_url,
            concurrency=5,
            error_policy=ErrorPolicy(fail_on=(KeyError,)),
            job_error_policies=policies,
        ):
            await settled(queue, 5)
        made = {}
        for name, job_id in ids.items():
            job = await queue.get_job(job_id)
            assert job is not None
            made[name] = (job.state, job.attempts_made)
        assert made == {
            "lookup": (JobState.FAILED, 1),
            "flaky": (JobState.FAILED, 3),
            "charge": (JobState.FAILED, 1),
            "gone": (JobState.FAILED, 1),
            "busy": (JobState.COMPLETED, 3),
        }
        gone = await queue.get_job(ids["gone"])
        assert gone is not None and gone.failed_reason == "HttpError: 404 no such user"


async def test_429_waits_for_retry_after_and_class_backoff_on_the_server_clock(
    redis_url: str, queue_name: str, redis: aioredis.Redis
) -> None:
    async def process(job: Job) -> Any:
        if job.attempts_started == 1:
            if job.name == "limited":
                raise HttpError(429, retry_after="0.4")
            raise TimeoutError("upstream slow")
        return "ok"

    policy = ErrorPolicy(backoff={TimeoutError: Backoff.fixed(300)})
    async with Queue(queue_name, redis_url) as queue:
        limited = await queue.add("limited", {}, attempts=2, backoff=Backoff.fixed(10))
        slow = await queue.add("slow", {}, attempts=2, backoff=Backoff.fixed(10))
        async with running_worker(queue_name, process, redis_url, error_policy=policy):
            await settled(queue, 2)
        for job in (limited, slow):
            assert await queue.get_job_state(job.id) is JobState.COMPLETED
        retrying = {e["job_id"]: e for e in await stream_events(redis, queue_name, "retrying")}
        delayed = {e["job_id"]: e for e in await stream_events(redis, queue_name, "delayed")}
        for job, wanted in ((limited, 400), (slow, 300)):
            failed_at = int(retrying[job.id]["_id"].split("-")[0])
            assert abs(int(delayed[job.id]["delay"]) - failed_at - wanted) <= 5
            starts = [
                int(e["_id"].split("-")[0])
                for e in await stream_events(redis, queue_name, "active")
                if e["job_id"] == job.id
            ]
            gaps = [b - a for a, b in itertools.pairwise(starts)]
            assert len(gaps) == 1 and gaps[0] >= wanted - 5


async def test_retry_on_retries_only_the_listed_errors_in_a_worker(
    redis_url: str, queue_name: str, redis: aioredis.Redis
) -> None:
    async def process(job: Job) -> Any:
        if job.name == "flaky" and job.attempts_started < 3:
            raise ConnectionResetError("reset by peer")  # a ConnectionError: listed
        if job.name == "broken":
            raise ValueError("bad sku")  # not listed: fails at once
        return "ok"

    policy = ErrorPolicy(retry_on=(ConnectionError,))
    async with Queue(queue_name, redis_url) as queue:
        flaky = await queue.add("flaky", {}, attempts=3, backoff=Backoff.fixed(10))
        broken = await queue.add("broken", {}, attempts=3, backoff=Backoff.fixed(10))
        async with running_worker(queue_name, process, redis_url, error_policy=policy):
            await settled(queue, 2)
        done = await queue.get_job(flaky.id)
        assert done is not None and (done.state, done.attempts_made) == (JobState.COMPLETED, 3)
        failed = await queue.get_job(broken.id)
        assert failed is not None and (failed.state, failed.attempts_made) == (JobState.FAILED, 1)
        assert failed.failed_reason == "ValueError: bad sku"
    retried = [e["job_id"] for e in await stream_events(redis, queue_name, "retrying")]
    assert retried == [flaky.id, flaky.id]
    assert [e["job_id"] for e in await stream_events(redis, queue_name, "failed")] == [broken.id]


async def test_fail_on_job_timeout_fails_a_timed_out_job_at_once(
    redis_url: str, queue_name: str, redis: aioredis.Redis
) -> None:
    async def process(job: Job) -> Any:
        if job.name == "slow":
            await asyncio.sleep(30)
        if job.attempts_started == 1:
            raise TimeoutError("upstream slow")  # a TimeoutError, but not a JobTimeout
        return "ok"

    policy = ErrorPolicy(fail_on=(JobTimeout,))
    async with Queue(queue_name, redis_url) as queue:
        slow = await queue.add("slow", {}, attempts=3, timeout_ms=200, backoff=Backoff.fixed(10))
        other = await queue.add("other", {}, attempts=3, backoff=Backoff.fixed(10))
        async with running_worker(
            queue_name, process, redis_url, concurrency=2, error_policy=policy
        ):
            await settled(queue, 2)
        failed = await queue.get_job(slow.id)
        assert failed is not None and (failed.state, failed.attempts_made) == (JobState.FAILED, 1)
        assert failed.failed_reason == "timed out after 0.2 s"
        done = await queue.get_job(other.id)
        assert done is not None and (done.state, done.attempts_made) == (JobState.COMPLETED, 2)
    retried = [e["job_id"] for e in await stream_events(redis, queue_name, "retrying")]
    assert retried == [other.id]
    (final,) = await stream_events(redis, queue_name, "failed")
    assert final["job_id"] == slow.id and final["failed_reason"] == "timed out after 0.2 s"


def _ms(entry: dict[str, str]) -> int:
    """The server time (ms) in an event's stream id."""
    return int(entry["_id"].split("-")[0])


@pytest.mark.parametrize("sandbox", [False, True], ids=["in-process", "sandboxed"])
async def test_a_response_429_is_retried_after_its_retry_after_on_the_server_clock(
    redis_url: str, queue_name: str, redis: aioredis.Redis, sandbox: bool
) -> None:
    async with Queue(queue_name, redis_url) as queue:
        limited = await queue.add(
            "limited",
            {"status": 429, "retry_after": "0.4", "reason": "Slow Down"},
            attempts=2,
            backoff=Backoff.fixed(10),
        )
        dated = await queue.add(
            "dated",
            {"status": 503, "retry_after_date_in": 2},
            attempts=2,
            backoff=Backoff.fixed(10),
        )
        gone = await queue.add("gone", {"status": 404, "reason": "No Such User"}, attempts=3)
        async with running_worker(
            queue_name, responds, redis_url, concurrency=3, sandbox=3 if sandbox else False
        ):
            await settled(queue, 3)
        for job in (limited, dated):
            assert await queue.get_job_state(job.id) is JobState.COMPLETED
        failed = await queue.get_job(gone.id)
        assert failed is not None and (failed.state, failed.attempts_made) == (JobState.FAILED, 1)
        assert failed.failed_reason == "HttpError: 404 No Such User"
    retrying = {e["job_id"]: e for e in await stream_events(redis, queue_name, "retrying")}
    assert set(retrying) == {limited.id, dated.id}
    assert retrying[limited.id]["failed_reason"] == "HttpError: 429 Slow Down"
    delayed_events = await stream_events(redis, queue_name, "delayed")
    delayed = {e["job_id"]: int(e["delay"]) for e in delayed_events}
    # run-at on the server clock: the failure's time plus the delay the response named, 0.4 s,
    # or until its HTTP date, 2 s after the response was made but in whole seconds: 1-2 s
    assert abs(delayed[limited.id] - _ms(retrying[limited.id]) - 400) <= 5
    assert 1000 - 5 <= delayed[dated.id] - _ms(retrying[dated.id]) <= 2000 + 5
    actives = await stream_events(redis, queue_name, "active")
    for job in (limited, dated):
        starts = [_ms(e) for e in actives if e["job_id"] == job.id]
        assert len(starts) == 2 and starts[1] >= delayed[job.id]  # not retried before run-at


def test_worker_refuses_bad_policy_arguments() -> None:
    from engine import Worker

    async def process(job: Job) -> Any:
        return None

    with pytest.raises(InvalidJobOptions, match="error_policy="):
        Worker("q", process, error_policy={"fail_on": KeyError})  # type: ignore[arg-type]
    with pytest.raises(InvalidJobOptions, match="job_error_policies="):
        Worker("q", process, job_error_policies={"a": "b"})  # type: ignore[dict-item]
