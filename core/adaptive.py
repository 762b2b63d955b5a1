"""Adaptive per-host rate (AIMD): slow down when a host says 429/503, speed up again slowly.

A host with no configured limit starts unlimited (``rate is None``). The first throttle answer
sets its rate from what we were actually sending it, measured over the recent starts; every
further throttle multiplies the rate by ``DECREASE``; a run of successes adds ``INCREASE_PER_S``
per second of clean running, never above the ceiling (``--per-host-qps`` or ``--qps``), and at
the ceiling (or, with no ceiling, at ``LIFT_FACTOR`` times the rate that was throttled) the
host is unlimited again, and its state can be forgotten.

The constants, and why:

* ``DECREASE = 0.5``: the classic multiplicative cut; one cut undoes a whole probe of overshoot
  and a server limit is reached again only after ``rate / INCREASE_PER_S`` seconds.
* ``INCREASE_PER_S = 1`` request/s per second, but at least 5 % of the rate: a 50 r/s API
  cut to 25 r/s is back at its limit in about 14 s (one probe, one Retry-After pause, per
  ~15 s), and a host cut far too low by a burst of 429s recovers exponentially, not linearly.
* ``COOLDOWN_S = 1``: responses to requests already in flight when the first 429 arrived do not
  cut again; one overload episode is one cut.
* ``MIN_RATE = 0.1`` request/s: never stop a host entirely; Retry-After pauses do that.
* ``LIFT_FACTOR = 4``: with no configured ceiling, a host that has run clean up to four times
  the rate it was throttled at has shown the throttle was passing; it is unlimited again.
"""

from __future__ import annotations

from collections import deque

DECREASE = 0.5
INCREASE_PER_S = 1.0
INCREASE_MIN_FRACTION = 0.05
COOLDOWN_S = 1.0
MIN_RATE = 0.1
LIFT_FACTOR = 4.0
_START_WINDOW = 64


class AdaptiveRate:
    """The AIMD state of one host. ``rate`` is the current cap in requests/s, None: no cap."""

    __slots__ = (
        "_last_cut",
        "_last_raise",
        "_starts",
        "_throttled_at",
        "ceiling",
        "rate",
        "throttles",
    )

    def __init__(self, ceiling: float | None) -> None:
        self.ceiling = ceiling
        self.rate: float | None = None
        self.throttles = 0
        self._last_cut = -1e18
        self._last_raise = -1e18
        self._throttled_at = 0.0
        self._starts: deque[float] = deque(maxlen=_START_WINDOW)

    @property
    def at_rest(self) -> bool:
        """True when this state holds nothing a fresh one would not (safe to evict)."""
        return self.rate is None

    def note_start(self, now: float) -> None:
        self._starts.append(now)

    def send_rate(self, now: float) -> float | None:
        """Starts per second over the recent window, or None with too few starts to tell."""
        if len(self._starts) < 2:
            return None
        span = max(now, self._starts[-1]) - self._starts[0]
        return (len(self._starts) - 1) / span if span > 0 else None

    def on_throttle(self, now: float) -> float | None:
        """A 429/503 arrived: cut the rate (once per cooldown). Returns the new rate."""
        if now - self._last_cut < COOLDOWN_S:
            return self.rate
        self.throttles += 1
        current = self.rate
        if current is None:
            current = self.send_rate(now) or self.ceiling or 1.0
        if self.ceiling is not None:
            current = min(current, self.ceiling)
        self._throttled_at = current
        self.rate = max(MIN_RATE, current * DECREASE)
        self._last_cut = now
        self._last_raise = now
        return self.rate

    def on_success(self, now: float) -> float | None:
        """A non-throttled answer: raise the rate additively for the clean time since the last
        raise. Returns the new rate (None once the cap is lifted)."""
        if self.rate is None:
            return None
        elapsed = now - self._last_raise
        if elapsed < 0.1:
            return self.rate
        step = max(INCREASE_PER_S, self.rate * INCREASE_MIN_FRACTION) * elapsed
        self._last_raise = now
        raised = self.rate + step
        lift_at = self.ceiling if self.ceiling is not None else LIFT_FACTOR * self._throttled_at
        if raised >= lift_at:
            self.rate = None
        else:
            self.rate = raised
        return self.rate
