"""Two charts side by side, drawn by the widget's own plotext: the last hour of completed and
failed jobs per minute (the server's metrics, so it is full from the start), and the last
minute per second (live, from the monotonic counters); of one queue or of all."""

from __future__ import annotations

from collections.abc import Sequence

from textual_plotext import PlotextPlot

COLORS = {"completed": "green", "failed": "red"}


Series = tuple[str, tuple[float, ...], tuple[float, ...], tuple[int, ...], tuple[int, ...]]


class ThroughputChart(PlotextPlot):
    """It owns its plot object (no global plotext state).

    Drawing is the costly part, so it draws only when the data changed: the per-second series
    gains a point once a second and the hour once a minute, whatever the snapshot rate."""

    _plotted: Series | None = None

    def show(
        self,
        completed: Sequence[float],
        failed: Sequence[float],
        hour_completed: Sequence[int] = (),
        hour_failed: Sequence[int] = (),
        scope: str = "",
    ) -> None:
        """Plot the hour (one point per minute) and the minute (one point per second), both
        oldest first; ``scope`` (a queue's name, already made inert) prefixes the titles."""
        data = (scope, tuple(completed), tuple(failed), tuple(hour_completed), tuple(hour_failed))
        if data == self._plotted:
            return
        self._plotted = data
        prefix = f"{scope}: " if scope else ""
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        plt.subplots(1, 2)
        hour = plt.subplot(1, 1)
        hour.title(f"{prefix}last hour, jobs/min")
        for name, series in (("completed", hour_completed), ("failed", hour_failed)):
            if series:
                hour.plot(list(series), label=name, marker="braille", color=COLORS[name])
        if hour_completed:
            last = len(hour_completed) - 1
            hour.xticks([0, last // 2, last], [f"-{last}m", f"-{last - last // 2}m", "now"])
        else:
            hour.xticks([])
        minute = plt.subplot(1, 2)
        minute.title(f"{prefix}last minute, jobs/s")
        for name, rates in (("completed", completed), ("failed", failed)):
            if rates:
                minute.plot(list(rates), marker="braille", color=COLORS[name])
        if completed:
            minute.xticks([0, len(completed) - 1], [f"-{len(completed)}s", "now"])
        else:
            minute.xticks([])
        self.refresh()
