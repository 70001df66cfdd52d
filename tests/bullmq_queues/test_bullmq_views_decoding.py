"""The workers, schedulers, flow and per-minute history reads on data Node never wrote: client
lists of every kind, scheduler records that are legacy, gone or not BullMQ's, flows whose links
loop or leave the prefix, and metrics with gaps (written by hand, as BULLMQ-LAYOUT.md says)."""

from __future__ import annotations

import base64
import hashlib
import json

import redis.asyncio as aioredis
from redis.typing import EncodableT, FieldT

from dashboard.bullmq.backend import BullMQBackend
from dashboard.bullmq.history import MINUTE_MS, minute_counts
from dashboard.bullmq.keys import BullKeys
from dashboard.bullmq.schedulers import last_job_id
from dashboard.bullmq.workers import host_of, worker_rows


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def test_worker_rows_from_every_kind_of_client() -> None:
    clients = [
        {"id": "1", "addr": "10.0.0.5:5000", "name": f"bull:{b64('mail')}:w:alpha", "age": "90",
         "idle": "2"},
        {"id": "2", "addr": "10.0.0.6:5001", "name": f"bull:{b64('mail')}", "age": "30",
         "idle": "0"},
        {"id": "3", "addr": "[::1]:5002", "name": "bull:mail", "age": "60", "idle": "1"},  # Py
        {"id": "4", "addr": "10.0.0.7:5003", "name": f"bull:{b64('mail')}:qe", "age": "5"},
        {"id": "5", "addr": "10.0.0.8:5004", "name": f"other:{b64('mail')}", "age": "5"},
        {"id": "6", "addr": "10.0.0.9:5005", "name": "", "age": "5"},
        {"id": "7", "addr": "10.0.0.5:5006", "name": f"bull:{b64('sms')}:w:a:b", "age": "1"},
    ]  # fmt: skip
    rows = worker_rows(clients, "bull", ["sms", "mail"], now_ms=1_000_000)
    assert [(r.queue, r.id, r.name) for r in rows] == [
        ("sms", "10.0.0.5:5006", "a:b"),
        ("mail", "10.0.0.5:5000", "alpha"),  # up 90 s: the oldest first
        ("mail", "[::1]:5002", None),
        ("mail", "10.0.0.6:5001", None),
    ]
    alpha = rows[1]
    assert (alpha.host, alpha.started_ms, alpha.last_beat_ms) == ("10.0.0.5", 910_000, 998_000)
    assert rows[2].host == "::1"
    assert all(r.pid is None and r.concurrency is None and r.in_flight is None for r in rows)
    assert host_of("/tmp/redis.sock:0") == "/tmp/redis.sock" and host_of("odd") == "odd"


async def test_schedulers_that_are_legacy_gone_or_not_bullmqs(
    redis: aioredis.Redis, queue_name: str
) -> None:
    keys = BullKeys("bull", queue_name)
    legacy_key = "report::1800000000000:UTC:*/5 * * * *"  # pre-v5: the key spells the options
    await redis.zadd(
        keys.repeat,
        {"fine": 1_000, "broken": 2_000, "gone": 3_000, legacy_key: 4_000, "no-timing": 5_000},
    )
    await redis.hset(keys.scheduler("fine"), mapping={"name": "tick", "every": "60000", "ic": "4"})
    await redis.hset(keys.scheduler("broken"), mapping={"name": "x", "every": "soon", "ic": "1"})
    await redis.hset(keys.scheduler("no-timing"), mapping={"name": "x", "ic": "1"})
    await redis.hset(keys.job("repeat:fine:1000"), mapping={"name": "tick", "timestamp": "1"})
    await redis.zadd(keys.state("completed"), {"repeat:fine:1000": 1})
    page = await BullMQBackend().read_schedulers(redis, queue_name, 0, 10)
    assert page.total == 5  # "gone" has no record: removed since, not shown
    rows = {row.id: row for row in page.rows}
    assert set(rows) == {"fine", "broken", legacy_key, "no-timing"}
    fine = rows["fine"]
    assert (fine.every_ms, fine.iterations, fine.next_run_ms) == (60_000, 4, 1_000)
    assert (fine.last_job_id, fine.last_job_state) == ("repeat:fine:1000", "completed")
    assert rows["broken"].malformed == "field 'every' is not a number: 'soon'"
    assert rows["no-timing"].malformed == "neither 'every' nor 'pattern' is set"
    legacy = rows[legacy_key]
    assert legacy.malformed is None
    assert (legacy.job_name, legacy.pattern, legacy.tz) == ("report", "*/5 * * * *", "UTC")
    assert legacy.end_date_ms == 1_800_000_000_000
    namespace = hashlib.md5(legacy_key.encode()).hexdigest()
    checksum = hashlib.md5(f"report{namespace}".encode()).hexdigest()
    assert legacy.last_job_id == f"repeat:{checksum}:4000"
    assert legacy.last_job_state is None  # its job is gone
    assert last_job_id("a:b:c", 7, legacy=False, name="n") == "repeat:a:b:c:7"


async def test_flows_that_loop_leave_the_prefix_or_point_nowhere(
    redis: aioredis.Redis, queue_name: str
) -> None:
    backend = BullMQBackend()
    q, far = BullKeys("bull", queue_name), BullKeys("{far}:app", "elsewhere")
    job: dict[FieldT, EncodableT] = {"name": "j", "timestamp": "1", "data": "{}", "opts": "{}"}
    # a -> b -> a: parent links that loop
    await redis.hset(q.job("a"), mapping={**job, "parentKey": q.job("b")})
    await redis.hset(q.job("b"), mapping={**job, "parentKey": q.job("a")})
    assert await backend.read_flow_path(redis, queue_name, "a") == [
        (queue_name, "b"),
        (queue_name, "a"),
    ]
    # a parent whose children live under another prefix, one of them in no key we can read
    parent = {"id": "p", "queueKey": f"bull:{queue_name}"}
    await redis.hset(q.job("p"), mapping=job)
    await redis.zadd(q.state("waiting-children"), {"p": 1})
    await redis.hset(far.job("c1"), mapping={**job, "parent": json.dumps(parent)})
    await redis.rpush(far.wait, "c1")
    await redis.sadd(q.dependencies("p"), far.job("c1"), "nonsense")
    await redis.hset(q.processed("p"), far.job("done"), '"ok"')
    links = await backend.read_job_links(redis, queue_name, "p", 10)
    assert links is not None and links.job.state == "waiting-children"
    assert [(c.queue, c.id, c.state, c.exists, c.pending) for c in links.children] == [
        ("{far}:app:elsewhere", "c1", "wait", True, True),
        ("{far}:app:elsewhere", "done", None, False, False),
    ]
    assert links.more_children  # "nonsense" is no job key: counted, not listed
    up = await backend.read_job_links(redis, "{far}:app:elsewhere", "c1", 10)
    assert up is not None and up.parent is not None
    assert (up.parent.queue, up.parent.id, up.parent.has_children) == (queue_name, "p", True)
    assert await backend.read_flow_path(redis, "{far}:app:elsewhere", "c1") == [
        (queue_name, "p"),
        ("{far}:app:elsewhere", "c1"),
    ]


def test_minutes_of_metrics_with_gaps_caps_and_none() -> None:
    end = 100 * MINUTE_MS
    # last flush in minute 98 with 2 jobs since; minute 97: 0, minute 96: 5
    meta = ["9", str(98 * MINUTE_MS + 500), "7"]
    assert minute_counts(meta, ["0", "5"], end, 5) == (5, 0, 2, 0, 0)
    assert minute_counts([None, None, None], [], end, 3) == (0, 0, 0)  # no worker records any
    assert minute_counts(meta, ["x", "5"], end, 5) == (5, 0, 2, 0, 0)  # a bad point counts 0
    ahead = ["3", str(101 * MINUTE_MS), "0"]  # a worker clock ahead of the server's
    assert minute_counts(ahead, ["4"], end, 2) == (0, 4)
