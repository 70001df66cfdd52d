"""Completed vs failed jobs per second over all queues, drawn by the widget's own plotext."""

from __future__ import annotations

from collections.abc import Sequence

from textual_plotext import PlotextPlot


class ThroughputChart(PlotextPlot):
    """A small line chart; it owns its plot object (no global plotext state)."""

    def show(self, completed: Sequence[float], failed: Sequence[float]) -> None:
        """Plot the two series (one point per second, oldest first)."""
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        plt.xticks([])
        if completed:
            plt.plot(list(completed), label="completed/s", marker="braille", color="green")
        if failed:
            plt.plot(list(failed), label="failed/s", marker="braille", color="red")
        self.refresh()
