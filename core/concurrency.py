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
  at once. The first episode (the limit never used) sets the limit to that; later ones clamp it
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
* **No latency signal** (Vegas, Gradient2). Those infer a queue from rising latency; the caps
  this reads refuse at the door instead of queueing (nginx ``limit_conn`` answers at once, the
  100 ms backend behind it is as fast at 4 as at 16 in flight), so latency says nothing until
  the refusal does, and a latency rule would slow ordinary hosts whose latency merely varies.

Never above ``ceiling`` (``--per-host-connections`` or ``--workers``). When growth reaches it,
the host is unlimited again and its state forgotten (``at_rest``). Time is injected (``now``).
"""

from __future__ import annotations

import math

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


def says_too_many(outcome: AttemptOutcome) -> bool:
    """Is this answer a "too many at once" refusal? A ``503`` without ``Retry-After``, or a
    connection refused or reset. (Whether other requests were in flight is the limiter's
    part: alone, such an answer says the server is down, not that we were too many.)"""
    if outcome.error is not None:
        return isinstance(outcome.error, ConnectionRefused | ConnectionReset)
    return outcome.status == 503 and outcome.retry_after is None


class AdaptiveConcurrency:
    """The learned in-flight limit of one host. ``limit`` None: nothing learned (the
    configured cap, if any, holds)."""

    __slots__ = (
        "_accepted",
        "_announced",
        "_cut_at",
        "_held_since",
        "_refused",
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

    @property
    def at_rest(self) -> bool:
        """True when this state holds nothing a fresh one would not (safe to evict)."""
        return self.limit is None

    @property
    def cap(self) -> int | None:
        """Requests that may be in flight now (None: no cap)."""
        if self.limit is None:
            return self.configured
        return max(1, int(self.limit + 1e-9))

    def on_overload(self, now: float, started: float, in_flight: int) -> int | None:
        """A "too many at once" answer to a request started at ``started``, with
        ``in_flight`` others still in flight. Returns the new cap."""
        if started < self._cut_at:  # answered to the burst already cut for
            self._accepted = max(0, self._accepted - 1)
            if not self._sure:
                self.limit = max(MIN_LIMIT, float(self._accepted))
            return self.cap
        refused = in_flight + 1
        self.overloads += 1
        self._sure = self.limit is not None
        self._accepted = in_flight
        cut = float(in_flight)
        if self.limit is not None:
            cut = min(max(cut, refused * DECREASE), refused * CUT, self.limit)
        self.limit = max(MIN_LIMIT, min(cut, float(self.ceiling)))
        self._refused = refused
        self._cut_at = now
        self._held_since = None
        return self.cap

    def announce(self, started: float) -> bool:
        """True once per change of ``cap`` worth telling, on the first answer to a request
        started after the last cut (while the burst that was cut for is still answering, the
        cut is still being refined)."""
        if started < self._cut_at or self.cap == self._announced:
            return False
        self._announced = self.cap
        return True

    def on_success(self, now: float, started: float, in_flight: int) -> int | None:
        """An answer that was not a refusal to a request started at ``started``, with
        ``in_flight`` others still in flight. Returns the new cap (None once lifted)."""
        if self.limit is None or started < self._cut_at:  # the limit is not in question
            return self.cap
        cap = self.cap or 1
        if in_flight + 1 < cap:  # the limit was not in use: nothing learned about more
            return cap
        best = self._refused - 1  # the highest level known to work
        if self.limit + 1 < best:
            self.limit = min(best, self.limit + 1.0 / self.limit)
        elif self._held_since is None:
            self.limit = max(self.limit, float(best))
            self._held_since = now
        elif now - self._held_since >= PROBE_S:
            self.limit = float(cap + 1)
            self._held_since = None
            self._refused = math.inf  # a probe that holds: grow again until refused
        if self.limit >= self.ceiling:
            self.limit = None
            self._refused = math.inf
        return self.cap
