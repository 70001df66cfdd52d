"""Benchmark harness for Corral against its peers; run it with ``python -m bench``.

Not part of the test suite: it starts a private server on 127.0.0.1, measures Corral, Node
BullMQ, the official Python BullMQ port, RQ and arq on the same scenarios (each peer in its own
processes and environment), measures a real ``corral dash`` on a pseudo-terminal, and prints (and
records in ``docs/performance.md``) tables of medians and spreads.
"""
