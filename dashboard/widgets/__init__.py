"""Widgets that render the model; they do no I/O and never see raw strings from Redis."""
