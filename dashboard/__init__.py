"""Corral's terminal dashboard: a live Textual view of the job queues, and its data source."""
