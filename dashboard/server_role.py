"""Z2: a dashboard pointed at a replica watches it as it would the primary, but never writes
there: what a replica holds comes from its primary, which alone takes writes.

``replica_refusal`` reads ``INFO replication`` (a read, allowed to the read-only ACL user) and
says why not to write, or None on a primary. The monitor reads it at every (re)connect, so the
action keys refuse before asking; the action layer checks again right before it writes, in case
a failover demoted the node since. No Textual here.
"""

from __future__ import annotations

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from dashboard.conn_errors import READ_ONLY_REPLICA

WRITABLE_REPLICA = (
    "the server is a replica: what is written there never reaches its primary and is lost at "
    "the next sync; point the dashboard at the primary"
)


async def replica_refusal(client: Redis) -> str | None:
    """Why not to write through ``client`` when its server is a replica (None: a primary, or
    ``INFO`` refused: then a ``READONLY`` reply says it)."""
    try:
        replication = await client.info("replication")
    except ResponseError:
        return None
    if replication.get("role") not in ("slave", "replica"):
        return None
    read_only = replication.get("slave_read_only", replication.get("replica_read_only", 1))
    return READ_ONLY_REPLICA if str(read_only) != "0" else WRITABLE_REPLICA
