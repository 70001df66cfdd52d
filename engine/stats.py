"""``WorkerStats``: what one worker process has done since it started (for its metrics)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass(slots=True)
class WorkerStats:
    """Counters a worker keeps in memory; ``/metrics`` exposes them."""

    completed: int = 0
    failed: int = 0  # failed for good
    retried: int = 0  # failed attempts that will be retried
    started_at: float = field(default_factory=time.time)

    def finished(self, ok: bool, retry_delay: int) -> None:
        """Count one attempt whose outcome was recorded in Redis."""
        if ok:
            self.completed += 1
        elif retry_delay < 0:
            self.failed += 1
        else:
            self.retried += 1
