"""A window limiter that says nothing: its rate between refusals, and its quota and period.

A fixed or moving window (``limit`` requests per ``window`` seconds, the limiters of web
frameworks) that answers a bare ``429`` (no ``Retry-After``, no quota headers) tells a client
neither its limit nor its window. Two rules read them from what it did:

``BetweenRefusals`` (the adaptive rate's, ``core/adaptive.py``): what it accepted between two
refusals. A client that sends faster than the window allows fills each window and is refused
until the next one opens, so the successes between two refusal episodes are one window's worth
and the time between them is the window, plus the part of the last pause that outlasted it.
That last pause (a backoff chosen without knowing the window, and growing while the window
stays closed: it can outlast a long window by seconds) is left out of the time: the window
opened at some moment during it. That makes the estimate an upper bound; the refusal that a too
high estimate brings cuts it down at once, while a lower bound would hold the host far below
its limit for the whole run (growth back is slow by design). An episode with nothing accepted
since the last one says the window is still closed: it is no new measurement, and the anchor
stays where it was.

``BareWindow`` (the limiter's, next to the announced quota): the window as a count, not a rate.
Held to a rate, a window of 100 per 10 s is sent 10 a second, and three windows' work takes
30 s where a client that knew the window takes 20 (it sends each window's quota as it opens).
So: the successes up to the first refusal are the window's quota; while it is closed one
request at a time probes it, ``PROBE_S`` apart (never the whole pool); the probe that is
accepted opens the next window and bounds the period (the window opened after the last refused
probe, at or before the accepted one: the upper bound is kept, so the predicted opening is
never early). From then on the host sends up to the quota at each opening, stops, and probes
alone at the predicted next opening. A refusal inside a window thought open measures it again
(the quota: what that window accepted; the period: from its start to the next opening). A
first probe accepted at once says this is no window (a bucket, or a window shorter than a
probe's spacing), and so does a first refusal before anything was accepted (a host that
refuses everything, or some URLs only): the rule steps aside for good and the adaptive rate
and the growing backoff of bare 429s handle the host.

Time is injected (``now``, ``sent``: the limiter's monotonic clock).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

#: Shortest span measured over (an estimate over a few milliseconds is noise).
MIN_SPAN_S = 0.25
#: Share of the last pause left out of the span: the window opened at an unknown moment during
#: it; all of it out is the highest rate the count allows.
PAUSE_SHARE = 1.0
#: Spacing of the probes while a bare window is closed: each refused probe is one refusal, and
#: the period is known to within this (a 10 s window: ten probes, found at most 1 s late once).
PROBE_S = 1.0
#: A quota measured lower than the best one seen grows back by this share per clean window.
REGROW = 0.1
#: Why a start must wait (``BareWindow.wait``): the window's quota is spent until its predicted
#: opening, or a probe's spacing; a probe is out (``inf``: a release wakes the host).
CLOSED = "closed"
PROBING = "probing"


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


class BareWindow:
    """The quota and period of one host's bare-429 window, and the starts in it (see the
    module). ``wait`` / ``started`` / ``accepted`` / ``refused`` are fed by the limiter."""

    __slots__ = (
        "_best",
        "_clean",
        "_count",
        "_first",
        "_next_probe",
        "_open",
        "_period",
        "_probe_sent",
        "_probes_refused",
        "_quota",
        "_sent",
        "_start",
        "off",
    )

    def __init__(self) -> None:
        self.off = False  # no window: the adaptive rate handles the host
        self._open = True  # False while the window is closed (probing)
        self._quota: int | None = None  # the window's quota, once refused
        self._best = 0  # the highest quota measured
        self._period: float | None = None  # upper bound of the window's length, once opened
        self._start: float | None = None  # when the current window began (its first start)
        self._first: float | None = None  # the host's first start
        self._count = 0  # successes in the current window (sent since its start)
        self._sent = 0  # starts in the current window
        self._next_probe = 0.0
        self._probe_sent = math.inf  # when the probe out (or the last one) was sent
        self._probes_refused = 0
        self._clean = True  # no refusal inside the current window

    @property
    def holds(self) -> bool:
        """A window was found (it stayed closed past a probe) and this rule holds the host:
        the adaptive rate must not read its refusals as a rate."""
        return (
            not self.off
            and self._quota is not None
            and (self._period is not None or self._probes_refused > 0)
        )

    def at_rest(self, now: float) -> bool:
        """Nothing is held that a fresh object would not (safe to forget the host)."""
        if self.off or self._quota is None:
            return True
        if not self._open or self._start is None or self._period is None:
            return False
        return now >= self._start + self._period

    @property
    def closed(self) -> bool:
        """Refused and probing: pauses longer than the probe spacing would find it late."""
        return not self.off and not self._open

    @property
    def quota(self) -> int | None:
        return self._quota

    @property
    def period(self) -> float | None:
        return self._period

    def probe_in(self, now: float) -> float:
        """Seconds until the next probe may go (while closed)."""
        return max(0.0, self._next_probe - now)

    def wait(self, now: float, in_flight: int) -> tuple[float, str] | None:
        """None if a request may start now, else (seconds to wait, why)."""
        if self.off or self._quota is None:
            return None
        if self._open:
            assert self._start is not None
            if self._period is None:
                return None
            opening = self._start + self._period
            if now < opening:
                return (opening - now, CLOSED) if self._sent >= self._quota else None
            self._close(now)  # the predicted opening: probe it alone
        if in_flight > 0:
            return math.inf, PROBING
        if now < self._next_probe:
            return self._next_probe - now, CLOSED
        return None

    def started(self, now: float) -> None:
        if self.off:
            return
        if self._first is None:
            self._first = self._start = now
        if self._open:
            self._sent += 1
        else:
            self._probe_sent = now

    def answered(self, refused: bool, accepted: bool, sent: float, now: float) -> bool:
        """An answer to a request sent at ``sent``: ``refused`` (a bare 429), ``accepted`` (an
        answer the window counted), or neither (a 429 with Retry-After, an overload). True
        when this rule holds the host and the answer was its refusal: not a rate for the
        adaptive rule to cut to."""
        if refused:
            self.refused(now, sent)
            return self.holds
        if accepted:
            self.accepted(sent)
        return False

    def accepted(self, sent: float) -> None:
        """A success of a request sent at ``sent``."""
        if self.off:
            return
        if self._open:
            if self._start is None or sent >= self._start:
                self._count += 1
        elif sent >= self._probe_sent:
            self._opened(sent)
        else:  # answered late, sent before any probe: the window just closed took it
            self._count += 1
            if self._quota is not None and self._count > self._quota:
                self._quota = self._count
                self._best = max(self._best, self._quota)

    def refused(self, now: float, sent: float) -> None:
        """A bare 429 to a request sent at ``sent`` arrived at ``now``."""
        if self.off:
            return
        if self._open:
            if self._start is not None and sent < self._start:
                return  # a straggler of a window already over
            if self._quota is None and self._count == 0:
                self.off = True  # refused before anything was accepted: no window to learn
                return
            self._quota = max(1, self._count)
            self._best = max(self._best, self._quota)
            self._clean = False
            self._close(now)
            self._next_probe = now + PROBE_S
        elif sent >= self._probe_sent:
            self._probes_refused += 1
            self._next_probe = now + PROBE_S

    def _close(self, now: float) -> None:
        self._open = False
        self._next_probe = now
        self._probe_sent = math.inf
        self._probes_refused = 0

    def _opened(self, sent: float) -> None:
        """The probe sent at ``sent`` was accepted: a new window began then."""
        if self._period is None and self._probes_refused == 0:
            self.off = True  # open again at the first probe: no window to learn
            return
        assert self._start is not None and self._quota is not None
        span = sent - self._start
        if self._period is None or self._probes_refused > 0:
            self._period = span
        else:
            self._period = min(self._period, span)
            if self._clean and self._quota < self._best:  # grow back toward the best
                self._quota = min(self._best, self._quota + max(1, int(self._quota * REGROW)))
        self._open = self._clean = True
        self._start = sent
        self._count = self._sent = 1
