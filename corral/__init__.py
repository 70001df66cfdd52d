"""The ``corral`` command: one entry point for the server, worker, dashboard and demo."""
