"""What a window limiter accepted between two of its refusals: its rate, when it says nothing.

A fixed or moving window (``limit`` requests per ``window`` seconds, the limiters of web
frameworks) that answers a bare ``429`` (no ``Retry-After``, no quota headers) tells a client
neither its limit nor its window. What it accepted between two refusals does: a client that
sends faster than the window allows fills each window and is refused until the next one opens,
so the successes between two refusal episodes are one window's worth and the time between them
is the window, plus the part of the last pause that outlasted it. That last pause (a backoff
chosen without knowing the window, and growing while the window stays closed: it can outlast a
long window by seconds) is left out of the time: the window opened at some moment during it.
That makes the estimate an upper bound; the refusal that a too high estimate brings cuts it
down at once, while a lower bound would hold the host far below its limit for the whole run
(growth back is slow by design).

An episode with nothing accepted since the last one says the window is still closed: it is no
new measurement, and the anchor stays where it was. Time is injected (``now``).
"""

from __future__ import annotations

from dataclasses import dataclass

#: Shortest span measured over (an estimate over a few milliseconds is noise).
MIN_SPAN_S = 0.25
#: Share of the last pause left out of the span: the window opened at an unknown moment during
#: it; all of it out is the highest rate the count allows.
PAUSE_SHARE = 1.0


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
