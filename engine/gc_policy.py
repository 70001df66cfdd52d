"""Garbage-collector settings for a long-running service process (`corral worker`,
`corral dash`), applied once its start-up objects exist.

A busy worker allocates and frees a few container objects per job: tasks, futures, dicts of
job fields. CPython's cyclic collector runs after every 700 net allocations and, every tenth
and hundredth time, walks older generations too, which at thousands of jobs a second costs
about a tenth of the worker's CPU while finding almost nothing: these objects are freed by
reference counting. ``settle()`` moves everything that exists after start-up (modules,
classes, the worker's own structures) out of the collector's view (``gc.freeze``) and lets
the youngest generation grow to ``YOUNG_THRESHOLD`` objects before a collection. Cycles are
still collected; each collection just walks far fewer objects, far less often.
"""

from __future__ import annotations

import gc
from typing import Final

YOUNG_THRESHOLD: Final = 5000
"""Net allocations between collections of the youngest generation (CPython's default: 700)."""


def settle() -> None:
    """Freeze the objects made so far and set the collector's thresholds for a service."""
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, older, oldest)
