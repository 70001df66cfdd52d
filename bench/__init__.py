"""Benchmark harness for Corral against its peers; run it with ``python -m bench``.

Not part of the test suite: it starts a private server on 127.0.0.1, measures Corral and Node
BullMQ on the same scenarios, and prints (and records in ``docs/performance.md``) a table of
medians and spreads.
"""
