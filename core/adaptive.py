"""Adaptive per-host rate: slow down when a host says 429, speed up again slowly.

A host with no configured limit starts unlimited (``rate is None``). A throttle answer (429, or
503 with Retry-After) sets the rate from what the server *accepted*: the successes since the
host was last resumed (at most ``ACCEPT_WINDOW_S`` back, over at least ``MIN_WINDOW_S``) times
``MARGIN``. A throttle while already limited cuts the rate to between ``DECREASE`` and ``CUT``
of itself, by the same measure. Clean running raises the rate again: quickly (``GROWTH`` per
second, at least ``INCREASE_PER_S``) while well below the rate the server last refused, slowly
(``PROBE_GROWTH``) near it, so a rate-limited API is probed rarely and each probe costs one
Retry-After pause. At the ceiling (``--per-host-qps`` or ``--qps``), or with no ceiling at
``LIFT_FACTOR`` times the refused rate, the host is unlimited again and its state forgotten.

Two kinds of server are measured differently, because the accepted count misleads there:

* **A bucket without burst** (nginx ``limit_req`` without ``burst``) takes one request of a
  burst and refuses any closer than ``1/rate`` to the last: the opening burst says nothing about
  its rate, except that two starts it accepted ``gap`` apart put the rate at ``1/gap`` or more.
  The host ramps from just under that (doubling every ``RAMP_DOUBLING_S``) until a paced
  request is refused; the closest spacing accepted meanwhile is the limit, and the host holds
  ``BUCKET_MARGIN`` under it.
* **A window answering a bare 429** (no ``Retry-After``, no headers: ``windows.py``) is measured
  by what it accepted between two refusals; a refusal with nothing accepted since the last one
  says the window is still closed and cuts nothing.

Why these constants (how they were found: docs/benchmarks.md):

* Every 429 with Retry-After pauses the host (the contract), so each overshoot costs a whole
  pause: the design spends its effort on a good first estimate and on rare probes, not on the
  classic sawtooth. What the server accepted is that estimate; the send rate (often a burst of
  all workers at once) is not.
* ``MARGIN = 0.95``, ``CUT = 0.9``, ``DECREASE = 0.5``: land just under what was accepted;
  never cut by less than 10 % (the overshoot must end) nor more than half (one bad window must
  not collapse the rate). Answers to the same burst that arrive within the cooldown refine the
  estimate upwards (the first 429 is often handled before the successes sent with it), except
  after an exact measure (a paced refusal, a window's count).
* ``MIN_WINDOW_S = 0.25``: the first 429 of a run often comes milliseconds after the first
  request; counting the burst the server let through over a quarter second is a usable guess.
  A first throttle (from unlimited) is always unsure: it answered a burst of all workers, or
  a client too busy to send at its pace, never a paced rate. The rate grows quickly from it
  until the server refuses again; that refusal, while paced, is exact (the limit lies below
  the rate we sent) and only then does growth turn into probing.
* ``ACCEPT_WINDOW_S = 4``: what was accepted includes the server's burst (refilled during
  each pause); ``MARGIN`` only covers it over a long window: 5 % of 4 s is a burst of 0.2 s
  of the rate (10 at 50 r/s).
* ``GROWTH = 5 %``/s (at least ``INCREASE_PER_S = 1`` r/s per second) below ``NEAR = 0.9``
  of the refused rate, ``PROBE_GROWTH = 0.1 %``/s (at least ``PROBE_PER_S = 0.05``) above it.
  ``NEAR`` equals ``CUT``: after an ordinary cut the host probes at once instead of rushing
  back to 95 % of a refused rate that the server's burst inflated. Paused time is not clean
  running, and fast growth stops at ``NEAR``. A probe pushes the server's burst out at about
  ``sqrt(2 * burst * step)`` above the limit: a 50 r/s API with a burst of 10 is probed about
  once every 20 to 30 s (each probe costs one Retry-After pause, about 3 % of the time).
* ``COOLDOWN_S = 1``: answers to requests already in flight when the first 429 arrived do not
  cut again; one overload episode is one cut. A first cut handled before any success of its
  burst (the answers of one burst arrive in any order) is a guess from the send rate; the
  first success within the cooldown replaces it by what was accepted. Left standing, the
  guess (hundreds a second from a burst of all workers) took eight cuts and as many
  Retry-After pauses to come down to a 10 r/s limit, two to three times the whole run.
* ``MIN_RATE = 0.1`` request/s: never stop a host entirely; Retry-After pauses do that.
* ``BURST_SHARE = 0.5``: a server that took N requests at once before refusing the opening
  burst (a token bucket with a burst, as nginx ``limit_req burst=``) refills that burst while
  the host is paused; the host's bucket may bank half of it (never less than ``--burst``), so
  the moment after each pause uses it instead of losing it. Half, not all: some of the N were
  the server's rate, not its burst, and one start too many costs a whole pause. Not with
  ``--per-host-qps``, whose burst is the user's; ``--qps`` is a bucket of its own. Not for a
  bucket without burst (it holds one) nor a window (the banked starts overfill the next one).
* ``RAMP_TAKEN = 4``: a bucket without burst takes one request per ``1/rate`` of the time the
  workers need to send the opening burst (a few to a few tens of milliseconds): one to four at
  50 r/s. A burst of ten (nginx ``burst=10``) takes eleven or more and keeps the rule above.
  ``OPENING_STARTS = 8``: with slow start (``concurrency.py``) the opening is not a burst but
  one request, then two: a first throttle within the first eight starts is the opening too,
  however long their answers took. The spacings a bucket took are the gaps between the starts
  of successive successes: it judges each request against the last one it accepted.
* ``RAMP_DOUBLING_S = 0.25``, ``RAMP_STEP_S = 0.02``: from a few requests a second to 50 in
  about a second, in steps of under 6 %, so the refused pace is at most one step above the
  limit. ``RAMP_LIFT_S = 3``: twelve doublings without a refusal, far above anything a pool of
  workers sends one host: the host is unlimited again.
* A found bucket without burst is held, narrowed and cut by the rules of its bracket
  (``core/bucket_bracket.py``): the spacings it took and refused.
"""

from __future__ import annotations

import math
from collections import deque

from poolfetch.core.bucket_bracket import BUCKET_MARGIN, BucketBracket
from poolfetch.core.windows import BetweenRefusals

MARGIN = 0.95
CUT = 0.9
DECREASE = 0.5
MIN_WINDOW_S = 0.25
ACCEPT_WINDOW_S = 4.0
GROWTH = 0.05
INCREASE_PER_S = 1.0
PROBE_PER_S = 0.05
PROBE_GROWTH = 0.001
NEAR = 0.9
COOLDOWN_S = 1.0
MIN_RATE = 0.1
LIFT_FACTOR = 4.0
BURST_SHARE = 0.5
RAMP_TAKEN = 4
OPENING_STARTS = 8
RAMP_DOUBLING_S = 0.25
RAMP_STEP_S = 0.02
RAMP_LIFT_S = 3.0
_START_WINDOW = 64
_RAMP_STARTS = 4
_SUCCESS_WINDOW = 512


class AdaptiveRate:
    """The adaptive state of one host. ``rate`` is the current cap in requests/s, None: no cap."""

    __slots__ = (
        "_between",
        "_bucket",
        "_burst_episode",
        "_final",
        "_first_start",
        "_guessed",
        "_last_cut",
        "_last_raise",
        "_measured_from",
        "_rate_before_cut",
        "_refused_at",
        "_resumed_at",
        "_starts",
        "_successes",
        "_sure",
        "_taken",
        "burst",
        "ceiling",
        "rate",
        "throttles",
    )

    def __init__(self, ceiling: float | None) -> None:
        self.ceiling = ceiling
        self.rate: float | None = None
        #: Starts the host's bucket may bank: ``BURST_SHARE`` of what the server took at once
        #: before it refused the opening burst (it refills that much while the host is paused).
        self.burst = 1
        self._burst_episode = False
        self.throttles = 0
        self._last_cut = -1e18
        self._last_raise = -1e18
        self._measured_from: float | None = None
        self._refused_at = 0.0
        self._sure = False
        #: The last cut had no success to measure (a guess from the send rate).
        self._guessed = False
        self._rate_before_cut: float | None = None
        self._resumed_at = -1e18
        self._first_start: float | None = None
        self._starts: deque[float] = deque(maxlen=_START_WINDOW)
        #: Successes of the opening burst (None: no opening burst was refused).
        self._taken: int | None = None
        #: What was accepted between bare refusals (a window that says nothing else).
        self._between = BetweenRefusals()
        #: The last cut was measured exactly (a paced or window refusal): answers still
        #: arriving in its cooldown do not refine it.
        self._final = False
        self._successes: deque[float] = deque(maxlen=_SUCCESS_WINDOW)
        #: A bucket without burst: what it took and refused, and the top it is held at.
        self._bucket = BucketBracket()

    @property
    def at_rest(self) -> bool:
        """True when this state holds nothing a fresh one would not (safe to evict)."""
        return self.rate is None

    def note_start(self, now: float) -> None:
        if self._first_start is None:
            self._first_start = now
        self._starts.append(now)

    def note_pause(self, until: float, now: float | None = None) -> None:
        """The host is paused (from ``now``) until ``until``: acceptance is measured from then
        on."""
        self._resumed_at = max(self._resumed_at, until)
        if now is not None:
            self._between.paused(now, until)

    def send_rate(self, now: float) -> float | None:
        """Starts per second over the recent window, or None with too few starts to tell."""
        if len(self._starts) < 2:
            return None
        span = max(now, self._starts[-1]) - self._starts[0]
        return (len(self._starts) - 1) / span if span > 0 else None

    def accepted_rate(self, now: float) -> float | None:
        """Successes per second since the host last resumed (None before any success)."""
        return self._acceptance(now)[0]

    def _acceptance(self, now: float, begin: float | None = None) -> tuple[float | None, float]:
        """``accepted_rate`` and where its window began (``begin`` if given, else when the host
        last resumed, at most ``ACCEPT_WINDOW_S`` back; at least ``MIN_WINDOW_S`` long)."""
        if begin is None:
            first = now if self._first_start is None else self._first_start
            begin = max(first, self._resumed_at, now - ACCEPT_WINDOW_S)
            if begin >= now:  # throttled right as a pause ended: look at the window before it
                begin = now - ACCEPT_WINDOW_S
        count = sum(1 for t in self._successes if t >= begin)
        window = max(now - begin, MIN_WINDOW_S)
        return (count / window if count else None), begin

    @property
    def _ramping(self) -> bool:
        """The server took at most ``RAMP_TAKEN`` of the opening burst (a bucket without burst)
        and has not refused a paced request yet: the opening said nothing about its rate."""
        return (
            self.rate is not None
            and not self._sure
            and self._taken is not None
            and self._taken <= RAMP_TAKEN
        )

    def on_throttle(
        self, now: float, started: float | None = None, bare: bool = False
    ) -> float | None:
        """A throttle answer to a request sent at ``started`` arrived: lower the rate (once per
        cooldown). ``bare``: it named no ``Retry-After`` (a window that says nothing else).
        Returns the new rate."""
        if now - self._last_cut < COOLDOWN_S:
            return self._refine(now)
        between = self._between.refused(now) if bare else None
        if between is not None and between.closed:  # the window is still closed
            return self.rate
        if self._ramping:
            return self._paced_refusal(now, now if started is None else started)
        if between is not None and between.rate is not None:
            return self._window_cut(now, between.rate)
        self._final = False
        self.throttles += 1
        first = self._first_start if self._first_start is not None else now
        # the opening burst: the refused request was sent with the first ones (when it is
        # answered says nothing: a busy client handles answers late)
        sent = now if started is None else started
        self._burst_episode = self.rate is None and (
            sent - first <= MIN_WINDOW_S or len(self._starts) <= OPENING_STARTS
        )
        self._rate_before_cut = self.rate
        self._sure = self.rate is not None  # refused while paced: the limit is below our rate
        self._measured_from = None
        self._guessed = self.rate is None and self.accepted_rate(now) is None
        if self._sure and self._taken is not None and self._taken <= RAMP_TAKEN:
            # a bucket without burst found already: refused below the spacing it took before
            # (the bracket narrows), else at a pace it took before (the client's send jitter
            # under load, the server's clock resolution); a small cut ends it, unless the
            # last one did not (the jitter is wider than that: cut as any other refusal)
            assert self.rate is not None
            cut = self._bucket.refused_again(now, sent, self.rate, self._last_cut, CUT)
            self.rate = max(MIN_RATE, cut)
            self._measured_from = now
        else:
            self.rate, self._refused_at = self._estimate(self.rate, now)
        self._last_cut = now
        self._last_raise = now
        self._note_burst()
        if self._ramping and (gap := self._bucket.accepted_gap(first)) is not None:
            # a bucket without burst took starts this far apart: ramp from just under that
            self.rate = max(self.rate or MIN_RATE, BUCKET_MARGIN / gap)
        return self.rate

    def _note_burst(self) -> None:
        """Refused within ``MIN_WINDOW_S`` of the first request: the successes of that opening
        burst (answers still arriving within the cooldown) are what the server takes at once."""
        if self._burst_episode:
            self._taken = len(self._successes)
            if self._taken > RAMP_TAKEN:  # a bucket without burst banks nothing
                self.burst = max(self.burst, int(self._taken * BURST_SHARE))

    def _exact_cut(self, now: float, rate: float, refused: float) -> float:
        """Set a rate measured exactly (not refined by the rest of the episode)."""
        self.throttles += 1
        self._rate_before_cut = self.rate
        self._sure = self._final = True
        self._burst_episode = False
        self._measured_from = now
        self.rate = max(MIN_RATE, rate if self.ceiling is None else min(rate, self.ceiling))
        self._refused_at = refused
        self._last_cut = self._last_raise = now
        return self.rate

    def _window_cut(self, now: float, between: float) -> float:
        """A bare refusal with successes since the last: hold just under what the server
        accepted between the two (``windows.py``), and at least ``CUT`` below the rate
        refused."""
        rate = between * MARGIN
        if self.rate is not None:
            rate = min(rate, self.rate * CUT)
        self.burst = 1  # a burst banked during a pause would overfill the next window
        # grow back quickly toward the rate refused: the estimate may be low (windows that
        # opened late in a pause), and only a refusal while paced near the limit is exact
        return self._exact_cut(now, rate, between if self.rate is None else self.rate)

    def _paced_refusal(self, now: float, started: float) -> float:
        """The first refusal while ramping: a bucket without burst refuses a request as soon
        as the pace passes its rate, so the rate the refused request was sent at is the limit
        (within the server's clock resolution): hold just under it and probe from there."""
        # the closest spacing the bucket accepted while ramping (else the pace sent before the
        # refused request): the bucket's rate is at least that
        gap = self._bucket.accepted_gap(self._last_cut)
        sent = (1.0 / gap if gap else None) or self._pace_before(started) or self.rate or MIN_RATE
        # the rate lies between the spacing taken and the one refused (``bucket_bracket``)
        held = self._bucket.bracket(started, gap) or sent * BUCKET_MARGIN
        top = self._exact_cut(now, held, sent)
        self._bucket.found(top, now)
        return top

    def _pace_before(self, started: float) -> float | None:
        """Starts per second over the last few starts up to ``started``: the pace actually
        sent (the scheduler wakes late, so it is below the nominal rate)."""
        before = [t for t in self._starts if t <= started][-_RAMP_STARTS:]
        span = before[-1] - before[0] if len(before) == _RAMP_STARTS else 0.0
        return (len(before) - 1) / span if span > 0 else None

    def _refine(self, now: float) -> float | None:
        """Within an episode, answers still arriving (429s and the successes sent in the same
        burst, often handled after the first 429) refine the estimate, upwards only."""
        self._note_burst()
        if self.rate is not None and not self._final:
            # over the window of the cut: the pause that followed it is no resume
            refined, refused = self._estimate(self._rate_before_cut, now, self._measured_from)
            if self._guessed and self._acceptance(now, self._measured_from)[0] is not None:
                # the cut came before any success of its burst was handled: half the send
                # rate of all workers at once (hundreds a second) would take many cuts, each
                # a Retry-After pause, to come down; what was accepted replaces the guess
                self._guessed = False
                self.rate, self._refused_at = refined, refused
            else:
                self.rate = max(self.rate, refined)
                self._refused_at = max(self._refused_at, refused)
        return self.rate

    def _estimate(
        self, before: float | None, now: float, begin: float | None = None
    ) -> tuple[float, float]:
        """The rate after a throttle, from what was accepted (see the module docstring), and
        the rate the server refused (what was accepted, or the estimate)."""
        accepted, begin = self._acceptance(now, begin)
        if self._measured_from is None:
            self._measured_from = begin
        sent = self.send_rate(now) or 2.0
        if before is None and not accepted and self._burst_episode:
            estimate = MARGIN / MIN_WINDOW_S  # the burst was all sent at once: at most one taken
        elif before is None:
            estimate = accepted * MARGIN if accepted else sent * DECREASE
        else:
            measured = accepted * MARGIN if accepted else 0.0
            estimate = min(before * CUT, max(measured, before * DECREASE))
        if self.ceiling is not None:
            estimate = min(estimate, self.ceiling)
        # refused: what the server took before saying no, or (nothing taken) what we sent
        refused = accepted if accepted else min(sent, self.ceiling or sent)
        return max(MIN_RATE, estimate), max(estimate, refused)

    def on_success(self, now: float, started: float | None = None) -> float | None:
        """A non-throttled answer (to a request started at ``started``): raise the rate for
        the clean time since the last raise. Returns the new rate (None once lifted)."""
        self._successes.append(now)
        if started is not None:
            self._bucket.accepted(started)
        if now - self._last_cut >= COOLDOWN_S:  # not an answer to the burst just refused
            self._between.success()
        if self.rate is None:
            return None
        if now - self._last_cut < COOLDOWN_S:
            return self._refine(now)
        # clean running only: time paused by Retry-After does not count
        elapsed = now - max(self._last_raise, min(self._resumed_at, now))
        if self._ramping:
            return self._ramp(now, self.rate, elapsed) if elapsed >= RAMP_STEP_S else self.rate
        if elapsed < 0.1:
            return self.rate
        near = NEAR * self._refused_at if self._sure else float("inf")
        top = self._bucket_top()
        if top is not None:  # a bucket without burst: back to its top, a step narrower
            raised = self._bucket.raised(now, self.rate, elapsed, self._resumed_at)
            if self.ceiling is not None:
                raised = min(raised, self.ceiling)
        elif self.rate < near:  # fast, but not past the point where probing starts
            raised = min(near, self.rate + max(INCREASE_PER_S, self.rate * GROWTH) * elapsed)
        else:
            raised = self.rate + max(PROBE_PER_S, self.rate * PROBE_GROWTH) * elapsed
        self._last_raise = now
        lift_at = self.ceiling if self.ceiling is not None else LIFT_FACTOR * self._refused_at
        self.rate = None if raised >= lift_at else raised
        return self.rate

    def _bucket_top(self) -> float | None:
        """The fastest a bucket without burst, once found, is sent (None: not such a host)."""
        found = self._sure and self._taken is not None and self._taken <= RAMP_TAKEN
        return self._bucket.top if found and self._bucket.top < math.inf else None

    def _ramp(self, now: float, rate: float, elapsed: float) -> float | None:
        """Double every ``RAMP_DOUBLING_S`` of clean running until a paced refusal; lifted at
        the ceiling, or after ``RAMP_LIFT_S`` of doubling without one (the limit, if any, is
        far above anything sent)."""
        raised = rate * 2.0 ** (elapsed / RAMP_DOUBLING_S)
        self._last_raise = now
        lift_at = self._refused_at * 2.0 ** (RAMP_LIFT_S / RAMP_DOUBLING_S)
        if self.ceiling is not None:
            lift_at = min(lift_at, self.ceiling)
        if raised >= lift_at:
            self.rate = None
            self._taken = None
        else:
            self.rate = raised
        return self.rate
