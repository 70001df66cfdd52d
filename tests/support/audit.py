"""Command audit: which commands a piece of code sent to the server, with their arguments.

``CommandAudit`` turns the server's SLOWLOG into a full command log for the ``async with``
block (``slowlog-log-slower-than 0``), so every command of every client is recorded with its
arguments (the first 32, each cut to 128 bytes, which is plenty for these checks), its client
address and its client name. The audit's own connection is named and left out. It also keeps
``INFO commandstats`` and the ``ACL LOG`` of the block. Use it on a private server
(``fresh_server``): the log covers every client of the server, and audits change its config.

Rules it checks: "issued no writes" (a command flagged ``write`` by ``COMMAND INFO``, a script
call, or a server-changing admin command) and "issued no KEYS and no unbounded range reads"
(range reads must name a bounded span, ``*BYSCORE`` a ``LIMIT``, stream reads a ``COUNT``,
``LPOS`` a ``MAXLEN``; whole-set reads such as ``SMEMBERS`` are unbounded).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Final, Self

import redis.asyncio as aioredis

AUDIT_CLIENT_NAME: Final = "corral-command-audit"
MAX_SPAN: Final = 1_000
"""A range read may return at most this many entries to count as bounded."""

SCRIPT_CALLS: Final = frozenset({"eval", "evalsha", "fcall"})
SERVER_CHANGES: Final = frozenset(
    {"config|set", "config|rewrite", "config|resetstat", "script|load", "script|flush",
     "function|load", "function|delete", "function|flush", "acl|setuser", "acl|deluser",
     "flushall", "flushdb", "debug", "slowlog|reset", "client|kill"}
)  # fmt: skip
WHOLE_COLLECTION_READS: Final = frozenset(
    {"keys", "smembers", "sunion", "sinter", "sdiff", "hkeys", "hvals", "sort", "sort_ro"}
)
RANGE_BY_INDEX: Final = frozenset({"lrange", "zrange", "zrevrange"})
RANGE_BY_SCORE: Final = frozenset(
    {"zrangebyscore", "zrevrangebyscore", "zrangebylex", "zrevrangebylex"}
)
STREAM_RANGES: Final = frozenset({"xrange", "xrevrange"})
STREAM_READS: Final = frozenset({"xread", "xreadgroup"})
CONTAINER_COMMANDS: Final = frozenset(
    {"config", "script", "function", "acl", "client", "slowlog", "xinfo", "object"}
)


@dataclass(frozen=True, slots=True)
class LoggedCommand:
    """One command as the server ran it."""

    args: tuple[str, ...]
    client_address: str
    client_name: str

    @property
    def name(self) -> str:
        """Lower-case command name, with the subcommand for container commands (``config|get``)."""
        head = self.args[0].lower() if self.args else ""
        if head in CONTAINER_COMMANDS and len(self.args) > 1:
            return f"{head}|{self.args[1].lower()}"
        return head

    def __str__(self) -> str:
        return " ".join(self.args)


async def raw_command(client: aioredis.Redis, *args: str) -> Any:
    """Send a command redis-py has no typed method for."""
    return await client.execute_command(*args)  # type: ignore[no-untyped-call]


def _int(text: str) -> int | None:
    try:
        return int(text)
    except ValueError:
        return None


def _has_option(args: tuple[str, ...], option: str) -> bool:
    return any(a.upper() == option for a in args)


def _index_span(start: int, stop: int) -> int | None:
    """Entries an index range can return at most, or None if it runs to the end."""
    if start >= 0 and stop >= 0:
        return max(stop - start + 1, 0)
    if start < 0 and stop < 0:
        return max(stop - start + 1, 0)
    return None  # "from here to the end" (or from a negative start forward): unbounded


def unbounded_reason(command: LoggedCommand, max_span: int = MAX_SPAN) -> str | None:
    """Why ``command`` may read an unbounded amount, or None if its cost is bounded."""
    name, args = command.name, command.args
    if name in WHOLE_COLLECTION_READS:
        return f"{name.upper()} reads a whole collection"
    if name in RANGE_BY_INDEX:
        if _has_option(args, "BYSCORE") or _has_option(args, "BYLEX"):
            return None if _has_option(args, "LIMIT") else f"{name.upper()} BY... without LIMIT"
        start, stop = (_int(a) for a in args[2:4])
        if start is None or stop is None:
            return f"{name.upper()} with unreadable bounds"
        span = _index_span(start, stop)
        if span is None or span > max_span:
            return f"{name.upper()} {start} {stop} spans more than {max_span} entries"
        return None
    if name in RANGE_BY_SCORE and not _has_option(args, "LIMIT"):
        return f"{name.upper()} without LIMIT"
    if name in STREAM_RANGES | STREAM_READS and not _has_option(args, "COUNT"):
        return f"{name.upper()} without COUNT"
    if name == "lpos":
        upper = [a.upper() for a in args]
        if "MAXLEN" not in upper:
            return "LPOS without MAXLEN scans the whole list"
        position = upper.index("MAXLEN") + 1
        if position >= len(args) or not _int(args[position]):
            return "LPOS MAXLEN 0 scans the whole list"
    return None


@dataclass
class CommandAudit:
    """``async with CommandAudit(url) as audit:`` records every command the server ran."""

    url: str
    ignore_clients: frozenset[str] = frozenset()
    """Client names whose commands are left out (e.g. a producer feeding the audited code)."""
    commands: list[LoggedCommand] = field(default_factory=list)
    commandstats: dict[str, int] = field(default_factory=dict)
    acl_log: list[dict[str, Any]] = field(default_factory=list)
    _flags: dict[str, frozenset[str]] = field(default_factory=dict)
    _client: aioredis.Redis | None = None
    _saved: dict[str, str] = field(default_factory=dict)

    async def __aenter__(self) -> Self:
        client = aioredis.Redis.from_url(
            self.url, decode_responses=True, client_name=AUDIT_CLIENT_NAME
        )
        self._client = client
        saved: Any = await client.config_get("slowlog-*")
        self._saved = {k: str(v) for k, v in saved.items()}
        await client.config_set("slowlog-max-len", 1_000_000)
        await client.config_set("slowlog-log-slower-than", 0)
        await client.slowlog_reset()
        await client.config_resetstat()
        await raw_command(client, "ACL", "LOG", "RESET")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        client = self._client
        assert client is not None
        try:
            raw: Any = await raw_command(client, "SLOWLOG", "GET", "-1")
            entries = [
                LoggedCommand(tuple(str(a) for a in e[3]), str(e[4]), str(e[5]))
                for e in reversed(raw)  # the slowlog is newest first
            ]
            ignored = self.ignore_clients | {AUDIT_CLIENT_NAME}
            self.commands = [c for c in entries if c.client_name not in ignored]
            stats: Any = await client.info("commandstats")
            self.commandstats = {
                k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in stats.items()
            }
            self.acl_log = list(await raw_command(client, "ACL", "LOG"))
            for name in {c.name for c in self.commands}:
                info: Any = await raw_command(client, "COMMAND", "INFO", name)
                entry = info.get(name) if isinstance(info, dict) else None
                self._flags[name] = frozenset(entry["flags"]) if entry else frozenset()
        finally:
            for option, value in self._saved.items():
                await client.config_set(option, value)
            await client.aclose()

    # -- rules ------------------------------------------------------------------------------

    def calls(self) -> Counter[str]:
        """How often each command was sent (audited clients only)."""
        return Counter(c.name for c in self.commands)

    def writes(self) -> list[LoggedCommand]:
        """Commands that may change data or the server."""
        return [
            c
            for c in self.commands
            if "write" in self._flags.get(c.name, frozenset())
            or c.name in SCRIPT_CALLS
            or c.name in SERVER_CHANGES
        ]

    def unbounded(
        self, exempt: Callable[[LoggedCommand], bool] = lambda _: False
    ) -> list[tuple[LoggedCommand, str]]:
        """Commands whose cost grows with the data, with the reason (unless ``exempt``)."""
        out = []
        for command in self.commands:
            reason = unbounded_reason(command)
            if reason is not None and not exempt(command):
                out.append((command, reason))
        return out

    def assert_no_writes(self) -> None:
        """Fail naming every write command issued inside the block."""
        writes = self.writes()
        assert not writes, "write commands issued:\n" + "\n".join(map(str, writes[:20]))

    def assert_bounded_reads(
        self, exempt: Callable[[LoggedCommand], bool] = lambda _: False
    ) -> None:
        """Fail naming every KEYS or unbounded range read issued inside the block."""
        bad = self.unbounded(exempt)
        assert not bad, "unbounded reads issued:\n" + "\n".join(f"{c}  <- {r}" for c, r in bad[:20])
