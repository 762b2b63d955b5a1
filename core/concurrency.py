"""Adaptive concurrency per host: how many requests may be in flight to one host at once.

A pool is not a rate limit, and a rate limit is not a connection limit: servers also cap the
requests one client may have open at once (nginx ``limit_conn`` per client address answers
``503`` without ``Retry-After``; a small accept queue refuses or resets connections). Such an
answer means "too many at once", not "too fast": the rate is left alone (``adaptive.py`` owns it)
and this object lowers the host's in-flight limit instead.

The rule is loss-based AIMD, as TCP's congestion window and Netflix's concurrency-limits
``AIMDLimit`` (cut on a drop, +1 while the limit is in use), with two changes that come from
what a refusal costs here (a retried request and its backoff) and from what an HTTP server's
cap is (a fixed integer, not a shared link):

* **The cut lands on what was accepted.** In one episode (the refusals of requests started
  before the cut) ``R`` of the ``X`` requests in flight were refused: the server took ``X - R``
  at once. The first episode (the limit never used, or slow start) sets the limit to that, and
  ``X - R + 1`` is the level refused (held, then probed: not rushed back to); later ones clamp it
  to between ``DECREASE`` and ``CUT`` of the concurrency that was refused (one bad moment must
  not collapse the limit, and the overshoot must end). Refusals of requests started before the
  cut are the same episode: one overload is one cut, however many requests it refused.
* **Growth is fast far below the refused level and rare near it.** Below ``refused - 1``
  successes raise the limit by ``1/limit`` each (one per round trip, classic congestion
  avoidance), only while the limit is in use (a success finds ``limit`` requests in flight:
  a host that never reaches its limit has not shown it could take more). At ``refused - 1``,
  the highest level known to work, the limit stays for ``PROBE_S`` of use before trying one
  more: against a fixed cap every probe is refused, so probes must be rare to keep refusals
  near 1 %, and a cap that was raised is still found within a minute or so.
* **Slow start.** A host nobody has measured starts with one request in flight; each success
  found at the limit adds one (the limit doubles per answered round, as TCP's slow start), and
  it doubles on its own every ``SLOW_START_DOUBLING_S`` since the first start, as seen at the
  next answer (a host whose answers take seconds is not held at one for a minute). At the
  ceiling the host is unlimited and slow start is over. A cap of four is then found by a fifth
  request, not by twelve refusals of a burst of sixteen: against a cap answering ``429`` with
  ``Retry-After`` every episode costs a host pause.
* **One refusal is a suspicion, two are a cap.** A lone refusal (one request of its episode,
  not at a level refused before, not one that paused the host) may be a flaky backend's random
  ``503`` rather than a cap: the limit lands on what was taken as usual, but the first success
  at it resumes slow start instead of holding there. A cap refuses the same level again (within
  one: answers not yet handled blur the count), which confirms it (one more refused request);
  random ``503`` s come at any level, and the host is not held
  at a handful of requests by an error that had nothing to do with concurrency.
* **A ceiling memory.** The level refused last is not probed again soon: the hold before a
  probe doubles with each probe refused at that level (up to ``PROBE_MAX_S``).
* **A cap found by a pausing refusal is not probed again within a job.** A ``429`` with
  ``Retry-After`` from a connection cap pauses the whole host: one probe every 5 s costs a fifth
  of the time, one every 30 s still a probe per half-minute job (nginx ``limit_conn 4`` with
  ``Retry-After: 1``, 1,200 URLs: 1.15x the ideal with the probe at 31 s, 1.12x without). After
  such a refusal the hold is ``COSTLY_PROBE_S`` and at least ``COSTLY_PAUSES`` times the longest
  pause the host was given (a probe costs one such pause: under 1 % of the time), doubling per
  refused probe up to ``COSTLY_PROBE_MAX_S``. A cap the server raises is found minutes later,
  not never.
* **No latency signal** (Vegas, Gradient2). Those infer a queue from rising latency; the caps
  this reads refuse at the door instead of queueing (nginx ``limit_conn`` answers at once, the
  100 ms backend behind it is as fast at 4 as at 16 in flight), so latency says nothing until
  the refusal does, and a latency rule would slow ordinary hosts whose latency merely varies.

Never above ``ceiling`` (``--per-host-connections`` or ``--workers``). When growth reaches it,
the host is unlimited again and its state forgotten (``at_rest``). Time is injected (``now``).
"""

from __future__ import annotations

import math
from collections import deque

from poolfetch.core.errors import ConnectionRefused, ConnectionReset
from poolfetch.core.models import AttemptOutcome

#: Cut of an episode while limited: land on what was accepted, within these shares of the
#: concurrency that was refused (TCP halves; Netflix's AIMDLimit takes 0.9).
DECREASE = 0.5
CUT = 0.9
#: Seconds the limit stays at the highest level known to work, in use, before it tries one
#: more (each try against a fixed cap costs one refused request).
PROBE_S = 5.0
#: Never fewer than this many requests in flight.
MIN_LIMIT = 1.0
#: Slow start: the limit doubles at least this often (seconds) while the host is in use.
SLOW_START_DOUBLING_S = 0.5
#: A ``429`` is read as "too many at once" only with at least this many others in flight (a
#: bucket without burst refuses the second of two at once: that is its rate) and when the
#: requests in flight over their latency (Little's law) are no more than this many times the
#: rate of successes over the last ``LITTLE_WINDOW`` latencies, at least ``LITTLE_MIN_S`` (a
#: cap of C in front of a backend of latency L takes C / L a second, half that or less while
#: slow start doubles it; a rate limit refuses at any concurrency, and its burst, answered
#: within milliseconds, must not pass for a sustained rate).
SIGNAL_IN_FLIGHT = 2
LITTLE_SLACK = 4.0
LITTLE_WINDOW = 2.0
LITTLE_MIN_S = 0.25
_ANSWERS = 128
#: Weight of the newest success in the latency average.
LATENCY_WEIGHT = 0.2
#: The longest hold before a probe (bare refusals).
PROBE_MAX_S = 120.0
#: After a refusal that paused the host: the hold before a probe, at least this many times the
#: longest pause the host was given, and the longest hold (see the module).
COSTLY_PROBE_S = 120.0
COSTLY_PAUSES = 100.0
COSTLY_PROBE_MAX_S = 600.0


def says_too_many(outcome: AttemptOutcome) -> bool:
    """Is this answer a "too many at once" refusal? A ``503`` without ``Retry-After``, or a
    connection refused or reset. (Whether other requests were in flight is the limiter's
    part: alone, such an answer says the server is down, not that we were too many.)"""
    if outcome.error is not None:
        return isinstance(outcome.error, ConnectionRefused | ConnectionReset)
    return outcome.status == 503 and outcome.retry_after is None


class AdaptiveConcurrency:
    """The learned in-flight limit of one host. ``limit`` None: nothing learned (the
    configured cap, if any, holds). A fresh host is in slow start (``slow_start``)."""

    __slots__ = (
        "_accepted",
        "_announced",
        "_answers",
        "_confirmed",
        "_costly",
        "_cut_at",
        "_held_since",
        "_hold",
        "_latency",
        "_memory",
        "_pause_s",
        "_probing",
        "_refused",
        "_slow_since",
        "_sure",
        "ceiling",
        "configured",
        "limit",
        "overloads",
    )

    def __init__(self, ceiling: int, configured: int | None = None) -> None:
        #: The highest the limit may go (``--per-host-connections`` or ``--workers``).
        self.ceiling = ceiling
        #: ``--per-host-connections`` (None: not given), the cap when nothing is learned.
        self.configured = configured
        self.limit: float | None = None
        #: Overload episodes so far (each one cut).
        self.overloads = 0
        self._cut_at = -math.inf
        self._accepted = 0  # X - R of the current episode
        self._refused = math.inf  # the concurrency last refused
        self._sure = False  # the limit was in force when it was refused
        self._held_since: float | None = None
        self._announced: int | None = configured
        #: The seconds held at the best known level before a probe (see the module).
        self._hold = PROBE_S
        #: A refusal paused the host (probes are held long; see the module), and the longest
        #: pause the host was given.
        self._costly = False
        self._pause_s = 0.0
        self._latency: float | None = None  # seconds a success took (moving average)
        self._answers: deque[float] = deque(maxlen=_ANSWERS)  # when the last successes came
        #: The level refused last, kept across probes (the ceiling memory).
        self._memory = math.inf
        self._probing = False  # the limit is one above the best known level, on trial
        #: The last episode shows a cap (several refused, a level refused again, or a pause),
        #: not a lone refusal that may have been a random error (see the module).
        self._confirmed = True
        #: Slow start: when the host's first request started (None: not started yet);
        #: ``-inf``: slow start is over.
        self._slow_since: float | None = None
        if ceiling > MIN_LIMIT:
            self.limit = MIN_LIMIT
        else:
            self._slow_since = -math.inf

    @property
    def slow_start(self) -> bool:
        """The host has not been refused nor reached the ceiling yet."""
        return self._slow_since != -math.inf

    @property
    def learned(self) -> bool:
        """A limit learned from a refusal holds (slow start is not one)."""
        return self.limit is not None and not self.slow_start

    @property
    def at_rest(self) -> bool:
        """True when this state holds nothing a fresh one would not (safe to evict)."""
        return self.limit is None or (self.slow_start and self.overloads == 0)

    @property
    def cap(self) -> int | None:
        """Requests that may be in flight now (None: no cap)."""
        if self.limit is None:
            return self.configured
        return max(1, int(self.limit + 1e-9))

    def cap_at(self, now: float) -> int | None:
        """``cap`` after the slow start's doubling by time (see the module)."""
        since = self._slow_since
        if self.limit is not None and since is not None and since != -math.inf:
            doubled = 2.0 ** ((now - since) / SLOW_START_DOUBLING_S)
            if doubled > self.limit:
                self._slow_start_to(doubled)
        return self.cap

    def started(self, now: float) -> None:
        """A request to the host was granted (slow start's clock starts with the first)."""
        if self._slow_since is None:
            self._slow_since = now

    def _resume_slow_start(self, now: float) -> None:
        """Back to slow start from the current limit (its doubling clock set to match)."""
        limit = self.limit if self.limit is not None else MIN_LIMIT
        self._slow_since = now - SLOW_START_DOUBLING_S * math.log2(max(limit, MIN_LIMIT))
        self._refused = math.inf
        self._held_since = None
        self._probing = False
        self._confirmed = True
        self._slow_start_to(limit + 1.0)

    def _slow_start_to(self, limit: float) -> None:
        if limit >= self.ceiling:
            self.limit = None
            self._slow_since = -math.inf
        else:
            self.limit = limit

    def on_overload(
        self, now: float, started: float, in_flight: int, costly: bool = False
    ) -> int | None:
        """A "too many at once" answer to a request started at ``started``, with
        ``in_flight`` others still in flight. ``costly``: the refusal pauses the host (probes
        are held longer). Returns the new cap."""
        if costly:
            self._costly = True
            self._hold = max(self._hold, COSTLY_PROBE_S)
        if started < self._cut_at:  # answered to the burst already cut for
            self._confirmed = True  # several refused at once: a cap
            self._accepted = max(0, self._accepted - 1)
            if not self._sure:  # the server took one fewer: it refused the one after
                self.limit = max(MIN_LIMIT, float(self._accepted))
                self._refused = self._memory = min(self._refused, self._accepted + 1)
            return self.cap
        refused = in_flight + 1
        self.overloads += 1
        self._confirmed = costly or abs(refused - self._memory) <= 1  # the level refused last
        first = self.limit is None or self.slow_start
        self._slow_since = -math.inf
        self._sure = not first
        self._accepted = in_flight
        cut = float(in_flight)
        if not first and self.limit is not None:
            cut = min(max(cut, refused * DECREASE), refused * CUT, self.limit)
        self.limit = max(MIN_LIMIT, min(cut, float(self.ceiling)))
        if refused > self._memory:  # the cap rose since: probing is cheap again
            self._hold = COSTLY_PROBE_S if costly else PROBE_S
        elif self._probing:  # a probe refused where the last refusal was: wait longer
            longest = COSTLY_PROBE_MAX_S if self._costly else PROBE_MAX_S
            self._hold = min(longest, self._hold * 2.0)
        self._probing = False
        self._memory = refused
        self._refused = refused
        self._cut_at = now
        self._held_since = None
        return self.cap

    def note_pause(self, seconds: float) -> None:
        """The host was paused for ``seconds`` (what a refused probe would cost it)."""
        self._pause_s = max(self._pause_s, seconds)

    def _probe_hold(self) -> float:
        """Seconds at the best known level, in use, before a probe of one more."""
        if not self._costly:
            return self._hold
        return max(self._hold, COSTLY_PAUSES * self._pause_s)

    def announce(self, started: float) -> bool:
        """True once per change of ``cap`` worth telling, on the first answer to a request
        started after the last cut (while the burst that was cut for is still answering, the
        cut is still being refined)."""
        if started < self._cut_at or self.cap == self._announced or self.slow_start:
            return False
        self._announced = self.cap
        return True

    def explains(self, now: float, in_flight: int) -> bool:
        """Would "too many at once" explain a throttle answer (a ``429``) that came at ``now``
        with ``in_flight`` others still in flight? (See ``SIGNAL_IN_FLIGHT``.) Refused below a
        limit known to work, or at a concurrency the answers do not bear out, it is a rate."""
        latency = self._latency
        if in_flight < SIGNAL_IN_FLIGHT or latency is None:
            return False
        cap = self.cap
        if self.learned and cap is not None and in_flight + 1 < cap:
            return False
        window = max(LITTLE_WINDOW * latency, LITTLE_MIN_S)
        answered = sum(1 for t in self._answers if t >= now - window) / window
        return in_flight / max(latency, 1e-3) <= LITTLE_SLACK * answered

    def on_success(self, now: float, started: float, in_flight: int) -> int | None:
        """An answer that was not a refusal to a request started at ``started``, with
        ``in_flight`` others still in flight. Returns the new cap (None once lifted)."""
        self._answers.append(now)
        took = max(0.0, now - started)
        held = self._latency
        self._latency = took if held is None else held + LATENCY_WEIGHT * (took - held)
        if self.limit is None or started < self._cut_at:  # the limit is not in question
            return self.cap
        cap = self.cap or 1
        if in_flight + 1 < cap:  # the limit was not in use: nothing learned about more
            return cap
        if self.slow_start:  # one more per success at the limit: doubling per round
            self._slow_start_to(self.limit + 1.0)
            return self.cap
        best = self._refused - 1  # the highest level known to work
        if self.limit + 1 < best:
            self.limit = min(best, self.limit + 1.0 / self.limit)
        elif not self._confirmed:  # a lone refusal the next round did not repeat
            self._resume_slow_start(now)
            return self.cap
        elif self._held_since is None:
            self.limit = max(self.limit, float(best))
            self._held_since = now
        elif now - self._held_since >= self._probe_hold():
            self.limit = float(cap + 1)
            self._held_since = None
            self._probing = True
            self._refused = math.inf  # a probe that holds: grow again until refused
        if self.limit >= self.ceiling:
            self.limit = None
            self._refused = math.inf
        return self.cap
