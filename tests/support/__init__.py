"""Helpers shared by the test suite: servers to break on purpose, and test-only utilities."""
