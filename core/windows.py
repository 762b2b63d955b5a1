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

``BareWindow`` (the limiter's, next to the announced quota): the window as a count and a
period, not a rate. Held to a rate, a window of 100 per 10 s is sent 10 a second, and three
windows' work takes 30 s where a client that knew the window takes 20 (it sends each window's
quota as it opens). So: the successes up to the first refusal are the quota (answers still
arriving that were sent before it add to it). While the window is closed one request at a time
probes it, at the likely window lengths after the window's first answer (``CANDIDATES_S``: 1, 2,
5, 10, 15, 20, 30, 60 s, then each minute), not at a fixed spacing: a window opens one length
after its first request reached the server, and that request had arrived by the time its answer
came back, so a probe sent then is never early. The accepted probe bounds the period from above
(from the first request's start to the probe's answer: the window is at most that long).

From then on each success is logged at its answer (when the server had surely counted it), and
a start is allowed while fewer than the quota are logged within one period back, counting those
in flight: a moving window gives each unit back one window after it was spent, and a fixed one
gives them all back at once no earlier than that, so the log is right for both, and a window
that took its quota as a burst gets it back as a burst. After the host was held for a while,
the first start goes alone (one probe at the predicted opening, not the whole pool). A refusal
inside a window thought open lowers the quota to what the log holds (one per episode; a lowered
quota grows back by ``REGROW`` per clean opening); a refused probe at the predicted opening says
the period was short, and the window is probed at the likely lengths again. A first probe
accepted says this is no window (a bucket, or a window of about a second or less), and so does
a first refusal before anything was accepted (a host that refuses everything, or some URLs
only): the rule steps aside for good and the adaptive rate and the growing backoff of bare
429s handle the host.

Time is injected (``now``, ``sent``: the limiter's monotonic clock).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from poolfetch.core.window_log import SuccessLog

#: Shortest span measured over (an estimate over a few milliseconds is noise).
MIN_SPAN_S = 0.25
#: Share of the last pause left out of the span: the window opened at an unknown moment during
#: it; all of it out is the highest rate the count allows.
PAUSE_SHARE = 1.0
#: Likely window lengths (seconds), probed after the window's first answer while it is
#: closed; after the last, one probe a minute (every multiple of 60: 5 min, 15 min, an hour).
CANDIDATES_S = (1.0, 2.0, 5.0, 10.0, 15.0, 20.0, 30.0, 60.0)
#: The spacing of probes past the last candidate.
LATE_PROBE_S = 60.0
#: A first probe accepted within this of the refusal (or at the first likely length) says
#: there is no window: a rate, or a window of about a second, the adaptive rate's.
PROBE_S = CANDIDATES_S[0]
#: A quota measured lower than the best one seen grows back by this share per clean opening.
REGROW = 0.1
#: Held at least this long (a window's quota spent), the next start is a probe, alone.
REOPEN_S = 0.5
#: Why a start must wait (``BareWindow.wait``): the window's quota is spent until a unit comes
#: back or the next probe is due; a probe is out (``inf``: a release wakes the host).
CLOSED = "closed"
PROBING = "probing"
_LEARNING, _SHUT, _OPEN = 0, 1, 2


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


def next_candidate(anchor: float, after: float) -> float:
    """The first probe time ``anchor + length`` later than ``after`` for a likely length."""
    for length in CANDIDATES_S:
        if anchor + length > after:
            return anchor + length
    late = math.floor((after - anchor) / LATE_PROBE_S) + 1
    return anchor + max(late * LATE_PROBE_S, CANDIDATES_S[-1] + LATE_PROBE_S)


class BareWindow:
    """The quota and period of one host's bare-429 window, and the starts in it (see the
    module). ``wait`` / ``started`` / ``answered`` are fed by the limiter."""

    __slots__ = (
        "_anchor",
        "_best",
        "_clean",
        "_episode",
        "_first_answer",
        "_log",
        "_measuring",
        "_next_probe",
        "_opening",
        "_origin",
        "_period",
        "_probe_sent",
        "_probes_refused",
        "_quota",
        "_reopen",
        "_shut_at",
        "_state",
        "_taken",
        "off",
    )

    def __init__(self) -> None:
        self.off = False  # no window: the adaptive rate handles the host
        self._state = _LEARNING
        self._quota: int | None = None  # the window's quota, once refused
        self._best = 0  # the highest quota measured
        self._period: float | None = None  # upper bound of the window's length, once opened
        self._log = SuccessLog()
        self._origin: float | None = None  # the start of the window's first success
        self._first_answer = 0.0  # and its answer: the first window's probes count from it
        self._opening = 0.0  # the answer that opened the current window
        self._taken = 0  # successes since the window opened
        self._measuring = False  # shut by a refusal: the probe that opens it measures the period
        self._anchor = 0.0  # the probes' origin while shut: the window's first answer
        self._next_probe = 0.0
        self._shut_at = 0.0  # when the window was last found shut
        self._probe_sent = math.inf  # when the probe out was sent (inf: none out)
        self._probes_refused = 0
        self._reopen = False  # the next start is a probe alone
        self._episode = -math.inf  # when the last refusal inside an open window came
        self._clean = True  # no refusal since the last opening

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
        if self._state != _OPEN or self._period is None:
            return False
        oldest = self._log.oldest()
        return oldest is None or now >= oldest + self._period

    @property
    def closed(self) -> bool:
        """Shut and probing: pauses longer than the probe spacing would find it late."""
        return not self.off and self._state == _SHUT

    @property
    def quota(self) -> int | None:
        return self._quota

    @property
    def period(self) -> float | None:
        return self._period

    def probe_in(self, now: float) -> float:
        """Seconds until the next probe may go (0 unless shut)."""
        return max(0.0, self._next_probe - now) if self._state == _SHUT else 0.0

    def wait(self, now: float, in_flight: int) -> tuple[float, str] | None:
        """None if a request may start now, else (seconds to wait, why)."""
        if self.off or self._state == _LEARNING:
            return None
        if self._probe_sent < math.inf:
            if in_flight > 0:
                return math.inf, PROBING
            self._probe_sent = math.inf  # it ended without a verdict (an error): probe again
            self._reopen = self._state == _OPEN
        if self._state == _SHUT:
            if in_flight > 0:
                return math.inf, PROBING
            if now < self._next_probe:
                return self._next_probe - now, CLOSED
            return None
        assert self._quota is not None and self._period is not None
        if self._reopen and in_flight > 0:
            return math.inf, PROBING
        back = now - self._period
        self._log.prune(back)
        free = self._quota - self._log.total - in_flight
        if free > 0:
            return None
        if self._quota <= in_flight:
            return math.inf, PROBING
        back_at = self._log.free_at(self._quota - in_flight - 1, back)
        held = back_at + self._period - now
        if held >= REOPEN_S:  # the opening, predicted from the unit counted at back_at
            self._reopen = True
            self._anchor = back_at
        return max(held, 1e-3), CLOSED

    def started(self, now: float) -> None:
        if self.off or self._state == _LEARNING:
            return
        if self._state == _SHUT or self._reopen:
            self._probe_sent = now
            self._reopen = False

    def answered(self, refused: bool, accepted: bool, sent: float, now: float) -> bool:
        """An answer to a request sent at ``sent``: ``refused`` (a bare 429), ``accepted`` (an
        answer the window counted), or neither (a 429 with Retry-After, an overload). True
        when this rule holds the host and the answer was its refusal: not a rate for the
        adaptive rule to cut to."""
        if refused:
            self.refused(now, sent)
            return self.holds
        if accepted:
            self.accepted(sent, now)
        return False

    def accepted(self, sent: float, now: float) -> None:
        """A success of a request sent at ``sent``, answered at ``now``."""
        if self.off:
            return
        if self._origin is None:
            self._origin, self._first_answer = sent, now
        self._log.add(now)
        if sent < self._probe_sent:
            self._taken += 1
            if self._state == _SHUT and self._measuring:  # answered late: the window took it
                assert self._quota is not None
                self._quota += 1
                self._best = max(self._best, self._quota)
            return
        self._probe_sent = math.inf
        if self._state == _SHUT:
            self._opened(sent, now)
            if self.off:
                return
        elif self._clean and self._quota is not None and self._quota < self._best:
            self._quota = min(self._best, self._quota + max(1, int(self._quota * REGROW)))
        self._clean = True
        self._origin, self._opening, self._taken = sent, now, 1

    def refused(self, now: float, sent: float) -> None:
        """A bare 429 to a request sent at ``sent`` arrived at ``now``."""
        if self.off:
            return
        if self._state == _LEARNING:
            if self._taken == 0:
                self._step_aside()  # refused before anything was accepted: no window to learn
                return
            self._quota = self._best = self._taken
            self._shut(now, self._first_answer, measuring=True)
        elif sent >= self._probe_sent:  # the probe
            self._probe_sent = math.inf
            self._probes_refused += 1
            if self._state == _OPEN:  # the predicted opening was early: find it again
                self._shut(now, self._anchor)
                self._probes_refused = 1
            else:
                self._next_probe = next_candidate(self._anchor, now)
        elif self._state == _OPEN and sent > self._episode:
            assert self._period is not None  # refused inside a window thought open: measure
            self._episode = now  # one refusal per episode: the rest were in flight with it
            held = self._log.since(now - self._period)
            self._quota = max(1, min(self._taken, held))
            self._clean = False
            self._shut(now, self._opening, measuring=True)

    def _step_aside(self) -> None:
        self.off = True
        self._log = SuccessLog()  # nothing to keep

    def _shut(self, now: float, anchor: float, measuring: bool = False) -> None:
        self._state = _SHUT
        self._shut_at = now
        self._anchor = anchor
        self._measuring = measuring
        self._next_probe = next_candidate(anchor, now)
        self._probe_sent = math.inf
        self._probes_refused = 0
        self._reopen = False

    def _at_once(self, sent: float) -> bool:
        """Was the probe sent at ``sent`` the first that could find the window open: within a
        probe's spacing of the refusal, or at the first of the likely lengths (a pause after
        the refusal can delay it past the spacing)?"""
        return sent - self._shut_at <= PROBE_S or sent < self._anchor + CANDIDATES_S[1]

    def _opened(self, sent: float, now: float) -> None:
        """The probe sent at ``sent`` was accepted at ``now``: the window is open again."""
        if self._period is None and self._probes_refused == 0 and self._at_once(sent):
            self._step_aside()  # open again at once: no window to learn (a rate, or about one)
            return
        assert self._origin is not None
        span = now - self._origin  # from the window's first start: at most that long
        if self._period is None:
            self._period = span
        elif self._measuring:
            self._period = min(self._period, span)
        elif self._probes_refused > 0:  # found again after a short prediction
            self._period = max(self._period, now - self._anchor + (now - sent))
        self._state = _OPEN
