"""What a window limiter accepted between two of its refusals: its rate, when it says nothing.

A fixed or moving window (``limit`` requests per ``window`` seconds, the limiters of web
frameworks) that answers a bare ``429`` (no ``Retry-After``, no quota headers) tells a client
neither its limit nor its window. What it accepted between two refusals does: a client that
sends faster than the window allows fills each window and is refused until the next one opens,
so the successes between two refusal episodes are one window's worth and the time between them
is the window, plus the part of the last pause that outlasted it. That last pause (a backoff
chosen without knowing the window) is half left out of the time: the window opened at some
moment during it, halfway on average (all of it out would make the estimate an upper bound far
above the limit, none of it a lower bound that holds the host below it for the whole run).

An episode with nothing accepted since the last one says the window is still closed: it is no
new measurement, and the anchor stays where it was. Time is injected (``now``).
"""

from __future__ import annotations

from dataclasses import dataclass

#: Shortest span measured over (an estimate over a few milliseconds is noise).
MIN_SPAN_S = 0.25
#: Share of the last pause left out of the span: the window opened at an unknown moment during
#: it, halfway on average.
PAUSE_SHARE = 0.5


@dataclass(frozen=True, slots=True)
class Estimate:
    """The answer to ``BetweenRefusals.refused``: ``closed`` (nothing accepted since the last
    refusal: the window is still closed) or ``rate`` (None: the first refusal, no estimate)."""

    rate: float | None = None
    closed: bool = False


class BetweenRefusals:
    """Successes counted between a host's refusal episodes, and the pauses between them."""

    __slots__ = ("_accepted", "_anchor", "_pause")

    def __init__(self) -> None:
        self._anchor: float | None = None
        self._accepted = 0
        self._pause = (0.0, 0.0)

    def success(self) -> None:
        self._accepted += 1

    def paused(self, now: float, until: float) -> None:
        """The host is paused from ``now`` until ``until``."""
        self._pause = (now, until)

    def refused(self, now: float) -> Estimate:
        """A new refusal episode begins now: the rate accepted since the last one."""
        if self._anchor is not None and self._accepted == 0:
            return Estimate(closed=True)
        anchor, accepted = self._anchor, self._accepted
        self._anchor, self._accepted = now, 0
        if anchor is None:
            return Estimate()
        start, until = self._pause
        waited = max(0.0, min(until, now) - max(start, anchor))
        return Estimate(rate=accepted / max(now - anchor - waited * PAUSE_SHARE, MIN_SPAN_S))
