"""The display interface the engine reports to, and the null display.

The engine pushes immutable ``StatsSnapshot``s a few times a second from the main thread; a
display renders the latest one on its own schedule. ``cli/progress.py`` has the rich one; cron
and ``--quiet`` get ``NullReporter`` (nothing on the terminal, nothing in the hot path).
"""

from __future__ import annotations

from typing import Any, Protocol

from poolfetch.core.stats import StatsSnapshot


class Reporter(Protocol):
    """What the runner calls; every method must be cheap and must not raise."""

    def start(self, total: int | None) -> None:
        """The run begins; ``total`` URLs if known yet."""
        ...

    def set_total(self, total: int) -> None:
        """The background line count finished (called from that thread)."""
        ...

    def update(self, snapshot: StatsSnapshot) -> None:
        """The latest counters (main thread, a few times a second)."""
        ...

    def finish(self, snapshot: StatsSnapshot, summary: dict[str, Any]) -> None:
        """The run is over (finished or interrupted); show the summary."""
        ...


class NullReporter:
    """Shows nothing."""

    def start(self, total: int | None) -> None:
        pass

    def set_total(self, total: int) -> None:
        pass

    def update(self, snapshot: StatsSnapshot) -> None:
        pass

    def finish(self, snapshot: StatsSnapshot, summary: dict[str, Any]) -> None:
        pass
