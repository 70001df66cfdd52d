"""Deduplication ids: at most one job per id while the id is held (BullMQ's simple, throttle and
debounce modes). ``Deduplication`` validates the ``deduplication=`` option of ``Queue.add``.

- simple (``{"id": x}``): the id is held until its job finishes (completes, fails for good,
  or is removed); adds meanwhile return that job.
- throttle (``{"id": x, "ttl": ms}``): the id is held for ``ttl`` ms, even after the job ends;
  ``extend`` restarts the ttl on every deduplicated add.
- debounce (``{"id": x, "ttl": ms, "extend": True, "replace": True}`` with a ``delay``): an add
  while the holder is still delayed replaces it (new data, new delay), so the last one runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .errors import InvalidJobOptions

MAX_TTL_MS = 10 * 365 * 86_400_000
_KEYS = frozenset({"id", "ttl", "extend", "replace"})


@dataclass(frozen=True, slots=True)
class Deduplication:
    """The ``deduplication`` option of one add: the id, and how long and how it is held."""

    id: str
    ttl: int | None = None
    extend: bool = False
    replace: bool = False

    def __post_init__(self) -> None:
        if (
            not isinstance(self.id, str)
            or not 1 <= len(self.id) <= 256
            or not self.id.isprintable()
        ):
            raise InvalidJobOptions(
                f"deduplication id={self.id!r} is invalid: expected 1-256 printable characters"
            )
        ttl = self.ttl
        if ttl is not None and (
            not isinstance(ttl, int) or isinstance(ttl, bool) or not 0 < ttl <= MAX_TTL_MS
        ):
            raise InvalidJobOptions(
                f"deduplication ttl={ttl!r} is invalid: expected ms from 1 to {MAX_TTL_MS}"
            )
        for name in ("extend", "replace"):
            if not isinstance(getattr(self, name), bool):
                raise InvalidJobOptions(
                    f"deduplication {name}={getattr(self, name)!r} is invalid: expected True or "
                    "False"
                )
        if self.extend and ttl is None:
            raise InvalidJobOptions("deduplication extend=True needs a ttl to extend")

    @classmethod
    def parse(cls, value: object) -> Deduplication:
        """Accept a ``Deduplication`` or a dict with ``id`` and optional ``ttl`` (ms),
        ``extend`` and ``replace``."""
        if isinstance(value, Deduplication):
            return value
        if not isinstance(value, Mapping):
            raise InvalidJobOptions(
                f"deduplication={value!r} is invalid: expected a dict like "
                "{'id': 'x', 'ttl': ms, 'extend': bool, 'replace': bool}"
            )
        unknown = set(value) - _KEYS
        if unknown:
            raise InvalidJobOptions(
                f"deduplication has unknown keys {sorted(unknown)}: expected some of "
                f"{sorted(_KEYS)}"
            )
        if "id" not in value:
            raise InvalidJobOptions("deduplication needs an 'id'")
        return cls(
            value["id"],
            value.get("ttl"),
            value.get("extend", False),
            value.get("replace", False),
        )

    @property
    def mode(self) -> str:
        """simple, throttle or debounce (for display)."""
        if self.replace:
            return "debounce"
        return "throttle" if self.ttl is not None else "simple"

    def to_json(self) -> dict[str, Any]:
        """The form stored in the job's opts."""
        out: dict[str, Any] = {"id": self.id}
        if self.ttl is not None:
            out["ttl"] = self.ttl
        if self.extend:
            out["extend"] = True
        if self.replace:
            out["replace"] = True
        return out
