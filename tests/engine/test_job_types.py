"""Typed jobs: schemas per job name (dataclasses, and pydantic models: pydantic is in the
``test`` extra for these tests), checked by ``Queue.add`` before anything is written and rebuilt
for the processor as ``job.typed``. In-process workers here; real worker processes in
test_typed_processes.py."""

from __future__ import annotations

import dataclasses
import json
import re
from datetime import UTC, date, datetime
from typing import Any

import pytest
import redis.asyncio as aioredis
from support.typed_jobs import (
    TYPES,
    Address,
    EmailJob,
    LineItem,
    OrderItem,
    OrderJob,
    Priority,
    typed_email,
    typed_email_sync,
)
from support.workers import running_worker, wait_until

from engine import (
    InvalidJobData,
    InvalidJobOptions,
    Job,
    JobState,
    JobTypes,
    Queue,
    SyncQueue,
    Worker,
)
from engine.keys import QueueKeys

# ---- dataclass schemas, no server ------------------------------------------------------------


def test_an_instance_is_stored_as_plain_json_and_read_back_equal() -> None:
    email = EmailJob(
        to="a@b.c",
        subject="hi",
        priority=Priority.HIGH,
        send_at=datetime(2030, 1, 2, 3, 4, tzinfo=UTC),
        cc=["x@y.z"],
        kind="receipt",
        address=Address("Paris"),
        items=(LineItem("A-1", 2),),
        extra={"n": [1, {"k": None}]},
    )
    stored = TYPES.dump("send-email", email)
    assert stored == {
        "to": "a@b.c",
        "subject": "hi",
        "priority": "high",
        "send_at": "2030-01-02T03:04:00+00:00",
        "cc": ["x@y.z"],
        "kind": "receipt",
        "address": {"city": "Paris", "zip": None},
        "items": [{"sku": "A-1", "qty": 2}],
        "extra": {"n": [1, {"k": None}]},
    }
    assert TYPES.load("send-email", json.loads(json.dumps(stored))) == email


def test_a_dict_is_checked_and_gets_the_defaults() -> None:
    stored = TYPES.dump("send-email", {"to": "a@b.c", "subject": "hi"})
    assert stored["priority"] == "low" and stored["cc"] == [] and stored["address"] is None


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"to": 5, "subject": "s"}, "field 'to': expected str, got int 5"),
        ({"subject": "s"}, "field 'to': missing"),
        ({"to": "a", "subject": "s", "bcc": []}, "field 'bcc': not a field of EmailJob"),
        ({"to": "a", "subject": "s", "priority": "urgent"}, "field 'priority': expected one of"),
        ({"to": "a", "subject": "s", "kind": "spam"}, "field 'kind': expected one of"),
        ({"to": "a", "subject": "s", "cc": "x@y.z"}, "field 'cc': expected a list of str"),
        ({"to": "a", "subject": "s", "cc": ["ok", 7]}, "field 'cc[1]': expected str"),
        ({"to": "a", "subject": "s", "address": {}}, "field 'address.city': missing"),
        ({"to": "a", "subject": "s", "send_at": "soon"}, "field 'send_at': expected"),
        (
            {"to": "a", "subject": "s", "items": [{"sku": "A", "qty": True}]},
            "field 'items[0].qty': expected int, got bool True",
        ),
        ({"to": "a", "subject": "s", "extra": {"k": 1, 2: 3}}, "field 'extra.2'"),
        ("a@b.c", "expected an object with the fields of EmailJob, got str"),
    ],
)
def test_bad_data_names_the_field(data: Any, message: str) -> None:
    with pytest.raises(InvalidJobData, match="^" + re.escape(message)) as caught:
        TYPES.dump("send-email", data)
    assert "(data of job 'send-email', schema EmailJob)" in str(caught.value)


def test_an_instance_with_a_wrong_value_is_refused_too() -> None:
    bad = EmailJob(to=["not", "a", "str"], subject="s")  # type: ignore[arg-type]
    with pytest.raises(InvalidJobData, match="field 'to': expected str, got list") as caught:
        TYPES.dump("send-email", bad)
    assert caught.value.field == "to"


def test_unregistered_names_pass_through_unchecked() -> None:
    assert TYPES.dump("other", {"anything": object}) == {"anything": object}
    assert TYPES.load("other", {"a": 1}) is None


def test_ints_widen_to_float_and_dates_round_trip() -> None:
    @dataclasses.dataclass
    class Reading:
        value: float
        day: date
        tags: set[str] = dataclasses.field(default_factory=set)

    types = JobTypes({"reading": Reading})
    stored = types.dump("reading", {"value": 3, "day": "2024-02-29", "tags": ["a"]})
    assert stored == {"value": 3.0, "day": "2024-02-29", "tags": ["a"]}
    assert types.load("reading", stored) == Reading(3.0, date(2024, 2, 29), {"a"})


def test_a_dataclass_that_contains_itself_works() -> None:
    @dataclasses.dataclass
    class Node:
        name: str
        children: list[Node] = dataclasses.field(default_factory=list)

    types = JobTypes({"tree": Node})
    tree = {"name": "a", "children": [{"name": "b", "children": [{"name": 1}]}]}
    with pytest.raises(InvalidJobData, match=r"field 'children\[0\].children\[0\].name'"):
        types.dump("tree", tree)


class NotJson:
    pass


def test_registering_a_field_type_that_is_not_json_is_refused_at_once() -> None:
    @dataclasses.dataclass
    class Bad:
        ok: int
        blob: NotJson

    with pytest.raises(InvalidJobOptions, match=r"schema Bad cannot be used: Bad\.blob: type"):
        JobTypes().register("bad", Bad)


def test_register_refuses_non_schemas_and_a_second_schema_for_a_name() -> None:
    types = JobTypes()
    with pytest.raises(InvalidJobOptions, match="expected a dataclass or a pydantic model"):
        types.register("x", dict)
    with pytest.raises(InvalidJobOptions, match="job name '' is invalid"):
        types.register("", EmailJob)
    assert types.register("x", EmailJob) is EmailJob
    assert types.register("x", EmailJob) is EmailJob  # the same again is fine
    with pytest.raises(InvalidJobOptions, match="already has schema EmailJob"):
        types.register("x", Address)
    assert types.schema("x") is EmailJob and "x" in types and len(types) == 1


def test_typed_as_names_what_the_job_carries() -> None:
    job = Job(id="7", queue="q", name="send-email", data={}, opts={}, timestamp=0)
    with pytest.raises(TypeError, match="carries no typed data, not EmailJob"):
        job.typed_as(EmailJob)
    job = dataclasses.replace(job, typed=Address("Rome"))
    with pytest.raises(TypeError, match="carries Address, not EmailJob"):
        job.typed_as(EmailJob)
    assert job.typed_as(Address).city == "Rome"


# ---- pydantic ------------------------------------------------------------------------------

ORDER = {"email": "a@b.c", "items": [{"sku": "A", "qty": 1}], "when": "2030-01-01T00:00Z"}


def test_pydantic_models_are_checked_the_pydantic_way() -> None:
    stored = TYPES.dump("place-order", ORDER)
    assert stored == {
        "email": "a@b.c",
        "items": [{"sku": "A", "qty": 1}],
        "when": "2030-01-01T00:00:00Z",
    }
    order = TYPES.load("place-order", stored)
    assert isinstance(order, OrderJob) and order.items[0].qty == 1
    assert TYPES.dump("place-order", order) == stored  # an instance is accepted as is
    with pytest.raises(InvalidJobData, match=r"^field 'items\[0\]\.qty': Input should be greater"):
        TYPES.dump("place-order", {**stored, "items": [{"sku": "A", "qty": 0}]})
    with pytest.raises(InvalidJobData, match=r"^field 'email': Field required \(and 1 more\)"):
        TYPES.dump("place-order", {"items": [], "when": 5j})


async def test_queue_add_checks_a_pydantic_model_before_anything_is_written(
    redis_url: str, queue_name: str, redis: aioredis.Redis
) -> None:
    keys = QueueKeys(queue_name)
    async with Queue(queue_name, redis_url, types=TYPES) as queue:
        bad_qty = {**ORDER, "items": [{"sku": "A", "qty": 0}]}
        with pytest.raises(InvalidJobData) as caught:
            await queue.add("place-order", bad_qty)
        assert str(caught.value).startswith("field 'items[0].qty': Input should be greater than 0")
        assert str(caught.value).endswith("(data of job 'place-order', schema OrderJob)")
        assert caught.value.field == "items[0].qty"
        with pytest.raises(
            InvalidJobData, match=r"^field 'when': Input should be a valid datetime"
        ):
            await queue.add_bulk([("place-order", ORDER), ("place-order", {**ORDER, "when": "x"})])
        assert await redis.exists(keys.id) == 0  # no job, not even an id
        assert await redis.keys(f"*{queue_name}*") == []

        job = await queue.add("place-order", OrderJob.model_validate(ORDER))
        assert job.data["when"] == "2030-01-01T00:00:00Z"
        stored = json.loads(str(await redis.hget(keys.job(job.id), "data")))
        assert stored == {
            "email": "a@b.c",
            "items": [{"sku": "A", "qty": 1}],
            "when": "2030-01-01T00:00:00Z",
        }


async def test_the_worker_hands_the_processor_a_pydantic_instance(
    redis_url: str, queue_name: str
) -> None:
    seen: list[Any] = []

    async def process(job: Job) -> Any:
        seen.append(job.typed)
        return job.typed_as(OrderJob).items[0].sku

    async with Queue(queue_name, redis_url, types=TYPES) as queue:
        added = await queue.add("place-order", {**ORDER, "items": [{"sku": "B-2", "qty": "3"}]})
        async with running_worker(queue_name, process, redis_url, types=TYPES):
            job = await _finished(queue, added.id)
    assert job.state is JobState.COMPLETED, job.failed_reason
    assert job.returnvalue == "B-2"
    (order,) = seen
    assert isinstance(order, OrderJob)
    assert order.items == [OrderItem(sku="B-2", qty=3)]  # "3" was coerced, the pydantic way
    assert order.when == datetime(2030, 1, 1, tzinfo=UTC)


# ---- Queue.add -----------------------------------------------------------------------------


async def test_add_checks_the_data_before_anything_is_written(
    redis_url: str, queue_name: str, redis: aioredis.Redis
) -> None:
    async with Queue(queue_name, redis_url, types=TYPES) as queue:
        with pytest.raises(InvalidJobData, match="field 'to': expected str, got int 5"):
            await queue.add("send-email", {"to": 5, "subject": "s"})
        with pytest.raises(InvalidJobData, match="field 'cc'"):
            await queue.add_bulk(
                [
                    ("send-email", {"to": "a", "subject": "s"}),
                    ("send-email", {"to": "b", "subject": "s", "cc": "oops"}),
                ]
            )
        assert await redis.exists(QueueKeys(queue_name).id) == 0  # no job, not even an id
        job = await queue.add("send-email", EmailJob(to="a@b.c", subject="hi"))
        assert job.data["to"] == "a@b.c" and job.data["priority"] == "low"
        stored = await redis.hget(QueueKeys(queue_name).job(job.id), "data")
        assert json.loads(str(stored)) == job.data
        other = await queue.add("untyped", {"free": "form"})  # names without a schema
        assert other.data == {"free": "form"}


async def test_register_on_the_queue_and_on_a_sync_queue(redis_url: str, queue_name: str) -> None:
    async with Queue(queue_name, redis_url) as queue:
        queue.register("send-email", EmailJob)
        with pytest.raises(InvalidJobData, match="field 'subject': missing"):
            await queue.add("send-email", {"to": "a"})
    with SyncQueue(queue_name, redis_url) as sync:
        sync.register("send-email", EmailJob)
        with pytest.raises(InvalidJobData, match="field 'subject': missing"):
            sync.add("send-email", {"to": "a"})
    with pytest.raises(InvalidJobOptions, match="expected a JobTypes"):
        Queue(queue_name, redis_url, types={"send-email": EmailJob})  # type: ignore[arg-type]


async def test_a_scheduler_template_is_checked(redis_url: str, queue_name: str) -> None:
    async with Queue(queue_name, redis_url, types=TYPES) as queue:
        with pytest.raises(InvalidJobData, match="field 'to': missing"):
            await queue.upsert_job_scheduler(
                "mailer", every=60_000, job_name="send-email", job_data={"subject": "s"}
            )
        assert await queue.get_job_schedulers() == []


# ---- the worker ----------------------------------------------------------------------------


async def _finished(queue: Queue, job_id: str) -> Job:
    async def done() -> bool:
        state = await queue.get_job_state(job_id)
        return state in (JobState.COMPLETED, JobState.FAILED)

    await wait_until(done, within=15)
    job = await queue.get_job(job_id)
    assert job is not None
    return job


@pytest.mark.parametrize("processor", [typed_email, typed_email_sync])
async def test_the_processor_gets_the_typed_object(
    redis_url: str, queue_name: str, processor: Any
) -> None:
    async with Queue(queue_name, redis_url, types=TYPES) as queue:
        added = await queue.add("send-email", {"to": "a@b.c", "subject": "hi", "cc": ["c@d.e"]})
        async with running_worker(queue_name, processor, redis_url, types=TYPES):
            job = await _finished(queue, added.id)
    assert job.state is JobState.COMPLETED, job.failed_reason
    assert job.returnvalue["schema"] == "EmailJob" and job.returnvalue["to"] == "a@b.c"


async def test_data_that_no_longer_matches_fails_at_once_without_retries(
    redis_url: str, queue_name: str
) -> None:
    """Added before the schema changed (here: by a queue that did not check it)."""
    async with Queue(queue_name, redis_url) as queue:
        added = await queue.add("send-email", {"to": 42, "subject": "s"}, attempts=5)
        async with running_worker(queue_name, typed_email, redis_url, types=TYPES):
            job = await _finished(queue, added.id)
    assert job.state is JobState.FAILED
    assert job.attempts_made == 1
    assert job.failed_reason == (
        "InvalidJobData: field 'to': expected str, got int 42 (data of job 'send-email' no "
        "longer matches schema EmailJob)"
    )


async def test_worker_refuses_a_types_that_is_not_a_registry(redis_url: str) -> None:
    with pytest.raises(InvalidJobOptions, match="expected a JobTypes"):
        Worker("q", typed_email, redis_url, types=[EmailJob])  # type: ignore[arg-type]
