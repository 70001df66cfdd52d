"""The dashboard's BullMQ backend: reads queues that Node BullMQ (v5 or v6) or its official Python
port keep in Redis, with plain read-only commands (no Lua, no writes)."""

from dashboard.bullmq.backend import BullMQBackend

__all__ = ["BullMQBackend"]
