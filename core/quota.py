"""The announced-quota rule of one host: pause at zero, pace before it, count what is in flight.

A server that announces its quota (``core/ratelimit_headers.py``) has told the client exactly
how many more requests it will take before a moment, so the client need never be refused:

* **Pause at zero.** When nothing remains, no request starts to the host until the reset, as
  for ``Retry-After`` (which wins where both are given: the caller passes it as the reset).
* **Pace before it.** The starts are spread so that what remains lasts until the reset: each
  start waits until the time left divided by the units left has passed since the previous one
  (never spending the quota at once and then waiting), and never faster than the policy's
  ``q/w`` when one is announced (the draft warns that ``r/t`` can overstate the rate). The
  last start keeps a pace's margin from the reset (``PACE_MARGIN``).
* **Unless it covers the work.** Pacing spreads a window's quota over the window, which costs
  nothing while the work needs the next window anyway (it opens at the reset however this one
  was spent); once what remains covers all the host's work still to start (``backlog``,
  known once the source is fully read), spreading it would only end the run later, so it goes
  now. This is what the server said it takes before the reset, so the policy's rate does not
  hold it back either. Unknown work (``None``: the source is still being read) is paced.
* **What was sent since counts.** The answer that opens a window (the probe's, alone) gives
  its count; every start after it takes one, so the count of a window is our own and exact.
  A response's remaining count does not know about the requests started after the one it
  answers, so they are subtracted from it (the starts are kept, by time); later answers of the
  same window lower the count only where they show more spent than the order of arrival can
  explain (someone else spending the quota). Subtracting every request in flight from every
  answer counted those the server had already counted twice: with 16 workers a window's count
  came out several short, and the last window, no longer covering the work, was spread.
* **Probe before knowing.** The first request to a host goes alone, and so does the first after
  a reset passes: a burst of every worker at a host whose quota is 5 would be refused before
  the first answer could say so. A host whose answer announces nothing is not held back again.

Answers arrive out of order, so each is judged by when its request was sent. The answer to a
request sent after the one the state comes from is news: a count higher than the last one
reported with a reset later than the one held means the window reset (a count without a reset:
the bucket refilled), so it starts a new window; a higher count with the same reset is a
request that overtook another on the way (it says nothing new). The answer to a request sent
earlier can only lower the count (``min``); one whose reset lies more than ``WINDOW_SLACK_S``
(``EXACT_SLACK_S`` for fractional resets) before the state's reports on a window already over
and is ignored. Within a window the
earliest estimate of its end is kept: integer resets are rounded, mostly up.

One object per host, owned and locked by ``LocalLimiter``; every method takes ``now`` (the
limiter's monotonic clock; ``sent``: when the request was granted, on the same clock), so unit
tests step it without sleeping.
"""

from __future__ import annotations

import bisect
import math

from poolfetch.core.ratelimit_headers import Quota

#: Why a start must wait (``HostQuota.wait``): the quota is spent until its reset; the
#: starts are being spread; the host's answer to a probe is awaited (``inf``: a release wakes).
PAUSE = "pause"
PACE = "pace"
PROBE = "probe"
#: Resets within this many seconds of the one held belong to the same window (integer
#: seconds from servers that round them either way, plus the network's delay).
WINDOW_SLACK_S = 1.0
#: The same for resets given to the millisecond (Discord's ``Reset-After``): the network's delay.
EXACT_SLACK_S = 0.25
#: Units the pacing leaves unspent at the end of the time left: the last start keeps two
#: paces from the reset. A reset rounded up to whole seconds is known, as the earliest of many
#: answers', to within about one pace; a start after the true reset is counted by the server's
#: next fixed window (it begins with the first request after this one ended), which then
#: takes one fewer of the work that is left: on three windows' work exactly, a fourth window.
PACE_MARGIN = 1
_NEVER = -1e18


class HostQuota:
    """What one host announced about its quota and the starts since (see the module)."""

    __slots__ = (
        "_answered",
        "_available",
        "_deadline",
        "_last_start",
        "_live",
        "_paced_from",
        "_rate",
        "_reported",
        "_sent",
        "_since",
        "_starts",
    )

    def __init__(self) -> None:
        self._answered = False  # the host answered at least once
        self._live = False  # an announcement is in force (until its deadline passes)
        self._available = math.inf  # units that may still start before the deadline
        self._deadline: float | None = None  # when the announced quota resets (monotonic)
        self._rate: float | None = None  # the policy's q/w, if announced
        self._last_start = _NEVER
        #: When the announcement in force began, and the starts since: the policy's rate is a
        #: budget over that time (a start late by the scheduler's wake-up is caught up on).
        self._paced_from = _NEVER
        self._since = 0
        #: When each request since the announcement in force was granted (ascending).
        self._starts: list[float] = []
        self._sent = _NEVER  # when the request the state comes from was sent
        self._reported = math.inf  # the remaining count that answer reported

    @property
    def available(self) -> float:
        """Units the host may still be sent before its reset (``inf``: no quota known)."""
        return self._available if self._live else math.inf

    @property
    def deadline(self) -> float | None:
        """When the quota held resets (monotonic time), or None."""
        return self._deadline if self._live else None

    def at_rest(self, now: float) -> bool:
        """Nothing is remembered that a fresh object would not (safe to forget the host)."""
        return not self._live or self._expired(now)

    def _expired(self, now: float) -> bool:
        return self._deadline is not None and now >= self._deadline

    def wait(
        self, now: float, in_flight: int, backlog: int | None = None
    ) -> tuple[float, str] | None:
        """None if a request may start now, else (seconds to wait, why). ``backlog``: the
        host's requests still to start, this one included (None: unknown)."""
        if not self._answered or (self._live and self._expired(now)):
            return (math.inf, PROBE) if in_flight > 0 else None
        if not self._live:
            return None
        if self._available <= 0:
            if self._deadline is None:  # spent, and no reset said: one at a time
                return (math.inf, PROBE) if in_flight > 0 else None
            return self._deadline - now, PAUSE
        if backlog is not None and backlog <= self._available:
            return None  # what remains covers the work left: pacing would only delay its end
        earliest = _NEVER
        if self._deadline is not None:
            # t - last >= (deadline - t) / (available + 1): the even share of the time left,
            # as if one more unit remained (``PACE_MARGIN``)
            units = self._available + PACE_MARGIN
            earliest = (self._deadline + units * self._last_start) / (units + 1)
        if self._rate is not None:
            earliest = max(earliest, self._paced_from + self._since / self._rate)
        return (earliest - now, PACE) if earliest > now else None

    def started(self, now: float) -> None:
        """A request to the host was granted (it counts against what remains)."""
        self._last_start = now
        self._since += 1
        if self._live:
            self._starts.append(now)
        if self._live:
            self._available -= 1

    def observe(self, quota: Quota | None, now: float, in_flight: int, sent: float) -> float | None:
        """An answer arrived to a request sent at ``sent``, announcing ``quota`` (None:
        nothing), with ``in_flight`` other requests to the host still on their way. Returns
        the seconds the host must pause when the quota is spent and a reset is known."""
        self._answered = True
        if quota is None:
            if self._live and self._expired(now):
                self._live = False  # the window ended and nothing new was said
            return None
        # the starts after this request's: the server had not counted them (``in_flight``
        # bounds them while a request older than the announcement's is still out)
        after = len(self._starts) - bisect.bisect_right(self._starts, sent)
        estimate = quota.remaining - max(after, 0 if self._starts else in_flight)
        deadline = now + quota.reset_after if quota.reset_after is not None else None
        held = self._deadline
        if not self._live or self._expired(now) or deadline is None or held is None:
            self._replace(quota, estimate, deadline, sent)
        elif sent >= self._sent:  # news
            slack = EXACT_SLACK_S if quota.exact else WINDOW_SLACK_S
            if quota.remaining > self._reported and deadline > held + slack:
                self._replace(quota, estimate, deadline, sent)
            else:
                self._correct(estimate, quota.remaining)
                self._deadline = min(held, deadline)
                self._sent, self._reported = sent, quota.remaining
        elif deadline >= held - (EXACT_SLACK_S if quota.exact else WINDOW_SLACK_S):  # older news
            self._correct(estimate, quota.remaining)
            self._deadline = min(held, deadline)
        self._rate = quota.policy_rate
        if self._available <= 0 and self._deadline is not None and self._deadline > now:
            return self._deadline - now
        return None

    def _correct(self, estimate: float, remaining: float) -> None:
        """A later answer of the same window lowers the count only where the order of arrival
        cannot explain it: the server's count when it took that request (``remaining``) is
        below ours now. Requests overtake each other on the way, so ``estimate`` (what it
        said less every start after it) wanders below the count of our own starts, which is
        exact unless someone else spends the same quota."""
        if remaining < self._available:
            self._available = estimate

    def _replace(self, quota: Quota, estimate: float, deadline: float | None, sent: float) -> None:
        # the budget of the policy's rate starts with the request that told it (one unit),
        # and the requests started since are spent from it
        self._paced_from, self._since = sent, 1 + max(0, int(quota.remaining - estimate))
        del self._starts[: bisect.bisect_right(self._starts, sent)]
        self._live = True
        self._available = estimate
        self._deadline = deadline
        self._sent, self._reported = sent, quota.remaining
