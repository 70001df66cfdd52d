"""BullMQ key names, client names, layout detection and job decoding, without Node (hashes are
written by hand here, the way BULLMQ-LAYOUT.md describes them)."""

from __future__ import annotations

import base64
import json

import pytest
import redis.asyncio as aioredis

from dashboard.bullmq.backend import BullMQBackend
from dashboard.bullmq.jobs import long_opts
from dashboard.bullmq.keys import BullKeys, validate_bull_prefix, validate_bull_queue_name
from dashboard.bullmq.layout import PauseStyle, detect_layout
from dashboard.bullmq.workers import count_workers


def test_key_names_and_meta_keys() -> None:
    keys = BullKeys("{app}", "emails")
    assert keys.wait == "{app}:emails:wait"
    assert keys.state("waiting-children") == "{app}:emails:waiting-children"
    assert keys.job("42") == "{app}:emails:42"
    assert keys.lock("42") == "{app}:emails:42:lock"
    assert BullKeys.meta_pattern("a*b") == r"a\*b:*:meta"
    assert BullKeys.queue_of_meta_key("bull:emails:meta", "bull") == "emails"
    # a scheduler hash named "meta" and a deeper prefix are not queues of "bull"
    assert BullKeys.queue_of_meta_key("bull:emails:repeat:meta", "bull") is None
    assert BullKeys.queue_of_meta_key("other:emails:meta", "bull") is None
    with pytest.raises(ValueError, match="state 'done' is invalid"):
        keys.state("done")


@pytest.mark.parametrize("bad", ["", "a\nb", 3])
def test_bad_prefix_is_named(bad: object) -> None:
    with pytest.raises(ValueError, match=r"BullMQ prefix .* is invalid"):
        validate_bull_prefix(bad)


@pytest.mark.parametrize("bad", ["", "a:b", "x\x1b"])
def test_bad_queue_name_is_named(bad: str) -> None:
    with pytest.raises(ValueError, match=r"BullMQ queue name .* is invalid"):
        validate_bull_queue_name(bad)


def test_workers_from_client_names() -> None:
    b64 = base64.b64encode(b"mail").decode()
    clients = [
        {"name": f"bull:{b64}"},  # Node worker without a name
        {"name": f"bull:{b64}:w:sender"},  # Node worker named "sender"
        {"name": f"bull:{b64}:qe"},  # QueueEvents: not a worker
        {"name": "bull:mail"},  # the Python port: the name as is
        {"name": f"other:{b64}"},  # another prefix
        {"name": ""},
        {"id": "7"},
    ]
    assert count_workers(clients, "bull", ["mail", "idle"]) == {"mail": 3, "idle": 0}


@pytest.mark.parametrize(
    ("version", "paused", "wait", "paused_len", "style", "mixed"),
    [
        ("bullmq:5.81.5", False, 3, 0, PauseStyle.LIST, False),
        ("bullmq:6.7.0", False, 3, 0, PauseStyle.FLAG, False),
        (None, False, 3, 0, PauseStyle.UNKNOWN, False),
        (None, True, 0, 4, PauseStyle.LIST, False),  # v5 pause: jobs in the paused list
        (None, True, 4, 0, PauseStyle.FLAG, False),  # v6 pause: jobs left in wait
        ("bullmq:6.7.0", True, 0, 4, PauseStyle.LIST, True),  # a v5 client paused a v6 queue
        ("bullmq:5.81.5", True, 4, 0, PauseStyle.FLAG, True),
        (None, True, 2, 2, PauseStyle.LIST, True),  # both lists filled while paused
        ("bullmq:6.7.0", False, 0, 2, PauseStyle.FLAG, True),  # a paused list on a running queue
        ("elixir-bullmq:1.2.0", False, 0, 0, PauseStyle.UNKNOWN, False),
    ],
)
def test_layout_detection(
    version: str | None,
    paused: bool,
    wait: int,
    paused_len: int,
    style: PauseStyle,
    mixed: bool,
) -> None:
    layout = detect_layout(version, paused, wait, paused_len)
    assert (layout.pause_style, layout.mixed) == (style, mixed), layout.reason


def test_short_option_names_become_long_ones() -> None:
    stored = {
        "attempts": 3,
        "de": {"id": "d1", "ttl": 500},
        "fpof": True,
        "kl": 10,
        "tm": "trace",
        "omc": True,
        "removeOnComplete": {"count": 5},
    }
    assert long_opts(stored) == {
        "attempts": 3,
        "deduplication": {"id": "d1", "ttl": 500},
        "failParentOnFailure": True,
        "keepLogs": 10,
        "telemetry": {"metadata": "trace", "omitContext": True},
        "removeOnComplete": {"count": 5},
    }


async def test_hand_written_jobs_decode_and_bad_ones_are_malformed(
    redis: aioredis.Redis, queue_name: str
) -> None:
    keys = BullKeys("bull", queue_name)
    await redis.hset(
        keys.job("1"),
        mapping={
            "name": "send",
            "data": json.dumps({"to": "a@b"}),
            "opts": json.dumps({"attempts": 3, "de": {"id": "d1"}}),
            "timestamp": "1700000000000",
            "delay": "0",
            "priority": "0",
            "attemptsMade": "2",  # the pre-v5 spelling of atm
            "deid": "d1",
            "failedReason": "boom",
            "stacktrace": json.dumps(["Error: boom", "Error: boom again"]),
            "parentKey": f"bull:{queue_name}:p1",
            "parent": json.dumps({"id": "p1", "queueKey": f"bull:{queue_name}", "fpof": True}),
        },
    )
    await redis.zadd(keys.state("failed"), {"1": 1700000000500})
    await redis.hset(keys.job("2"), mapping={"name": "bad", "timestamp": "1", "data": "{oops"})
    await redis.lpush(keys.wait, "2")
    await redis.lpush(keys.wait, "3")  # an id whose hash is gone
    backend = BullMQBackend()
    detail = await backend.read_job(redis, queue_name, "1")
    assert detail is not None and not detail.malformed
    assert detail.state == "failed"
    assert detail.data == {"to": "a@b"}
    assert detail.opts == {"attempts": 3, "deduplication": {"id": "d1"}}
    assert (detail.attempts_made, detail.attempts) == (2, 3)
    assert detail.stacktrace == ("Error: boom", "Error: boom again")
    sections = dict(detail.sections)
    assert "deduplication id: d1" in sections["bullmq"]
    assert "failParentOnFailure: true" in sections["parent"]
    bad = await backend.read_job(redis, queue_name, "2")
    assert bad is not None and bad.malformed and bad.state == "wait"
    assert "'data' is not JSON" in (bad.malformed_reason or "")
    assert await backend.read_job(redis, queue_name, "3") is None
    page = await backend.read_page(redis, queue_name, "wait", 0, 10)
    assert [(row.id, row.malformed) for row in page.rows] == [("3", True), ("2", False)]


def test_keyspace_channels_map_to_queues() -> None:
    backend = BullMQBackend("{app}")
    # meta only: job keys are never subscribed to (the events stream tells of every job)
    assert backend.keyspace_pattern(0) == "__keyspace@0__:{app}:*:meta"
    assert BullMQBackend("a*[b]").keyspace_pattern(3) == r"__keyspace@3__:a\*\[b\]:*:meta"
    assert backend.queue_of_channel("__keyspace@0__:{app}:mail:meta") == "mail"
    assert backend.queue_of_channel("__keyspace@0__:{app}:new:meta") == "new"
    assert backend.queue_of_channel("__keyspace@0__:{app}:mail:42:lock") is None
    assert backend.queue_of_channel("__keyspace@0__:{app}:mail:x:meta") is None  # a job's key
    assert backend.queue_of_channel("__keyspace@0__:{app}:new:17") is None
    assert backend.queue_of_channel("__keyspace@0__:bull:mail:meta") is None
    assert backend.queue_of_channel("{app}:mail:meta") is None
