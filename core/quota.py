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
* **A reset in whole seconds is timed by our own starts.** Announced to the second (a Unix
  time, or seconds from now, rounded up), a reset is up to a second late, on average half. A
  moving window (the other limiter web frameworks ship) gives each unit back one window after
  it was spent, so a unit that waits for a late reset waits again on every use, and the
  host is sent ever slower than the window allows; a fixed window opens up to a second later
  than it could each time. When the answer to the probe that opened a window says it took
  the first unit of the limit, the window began with that probe, and the announced reset,
  less the probe's start, rounded down, is its length (``period``; or the policy's ``w``).
  The units we spent come back one period after we started them, so the reset is timed by
  the first of our starts the server still counts (``_forget_uncounted``): that start plus
  the period plus ``RESET_MARGIN_S`` (the way to the server), never earlier than a second
  before the reset announced nor later than it. The pacing uses that time at once (pacing
  early never draws a refusal: the count is ours); pauses and the probe after them use it
  once the next window bore the period out (``_check_period``): a moving window that gives
  back only part of its limit, or a fixed one that opens again with our probe and lasts the
  same. A window aligned to the clock that happened to agree is found out by the refusal its
  early probe draws (``refused``), and the announced resets time the host from then on.

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
#: A start reaches the server this long after it was granted, at most (the reset timed by our
#: starts is that much later than their grant).
RESET_MARGIN_S = 0.03
#: Windows longer than this are timed by the reset announced (a second of rounding is under
#: a three-hundredth of them) and their starts are not kept.
MAX_PERIOD_S = 300.0
#: Starts kept to time the resets by (a window's quota, up to this many).
_HISTORY = 4096
_NEVER = -1e18


class HostQuota:
    """What one host announced about its quota and the starts since (see the module)."""

    __slots__ = (
        "_answered",
        "_available",
        "_confirmed",
        "_deadline",
        "_history",
        "_last_start",
        "_live",
        "_observed_at",
        "_paced_from",
        "_period",
        "_rate",
        "_renewed",
        "_reported",
        "_sent",
        "_since",
        "_starts",
        "_timed",
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
        #: Timing resets by our own starts (see the module): the window's length (None: not
        #: known), every start within one of it, when the state was last observed, and
        #: whether a refusal said the window does not begin with our probe.
        self._period: float | None = None
        self._history: list[float] = []
        self._observed_at = _NEVER
        self._timed = True
        #: The period was borne out by the window after the first (see ``_check_period``):
        #: until then only the pacing is timed by our starts, a pause lasts to the reset
        #: announced. And how many windows began (``_replace``) so far.
        self._confirmed = False
        self._renewed = 0

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
        reset = self._reset(pausing=True)
        return reset is not None and now >= reset

    def _reset(self, pausing: bool = False) -> float | None:
        """When the quota held resets: the announced deadline, or, for a window timed by our
        starts, the first of them the server still counted when the state was observed plus
        the period (see the module). ``pausing``: for a pause (and the probe after it), timed
        by our starts only once the period is confirmed."""
        deadline, period = self._deadline, self._period
        if deadline is None or period is None or not self._timed:
            return deadline
        if pausing and not self._confirmed:
            return deadline
        history = self._history  # only starts the server still counted when observed
        timed = history[0] + period + RESET_MARGIN_S if history else self._observed_at
        return min(deadline, max(deadline - 1.0, timed))

    def refused(self) -> None:
        """A request to the host was refused: a reset timed by our starts came too early (a
        window aligned to the clock, not to our probe); the announced reset times it now."""
        if self._period is not None:
            self._timed = False

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
            reset = self._reset(pausing=True)
            if reset is None:  # spent, and no reset said: one at a time
                return (math.inf, PROBE) if in_flight > 0 else None
            return reset - now, PAUSE
        reset = self._reset()
        if backlog is not None and backlog <= self._available:
            return None  # what remains covers the work left: pacing would only delay its end
        earliest = _NEVER
        if reset is not None:
            # t - last >= (reset - t) / (available + 1): the even share of the time left,
            # as if one more unit remained (``PACE_MARGIN``)
            units = self._available + PACE_MARGIN
            earliest = (reset + units * self._last_start) / (units + 1)
        if self._rate is not None:
            earliest = max(earliest, self._paced_from + self._since / self._rate)
        return (earliest - now, PACE) if earliest > now else None

    def started(self, now: float) -> None:
        """A request to the host was granted (it counts against what remains)."""
        self._last_start = now
        self._since += 1
        if self._live:
            self._starts.append(now)
            self._available -= 1
        if self._period is not None and self._timed:
            self._history.append(now)
            if len(self._history) > _HISTORY:  # a quota too large to keep: timed as said
                self._timed = False

    def observe(self, quota: Quota | None, now: float, in_flight: int, sent: float) -> float | None:
        """An answer arrived to a request sent at ``sent``, announcing ``quota`` (None:
        nothing), with ``in_flight`` other requests to the host still on their way. Returns
        the seconds the host must pause when the quota is spent and a reset is known."""
        self._answered = True
        if quota is None:
            if self._live and self._expired(now):
                self._live = False  # the window ended and nothing new was said
            return None
        renewals = self._renewed
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
        renewed = self._renewed
        self._observed_at = now
        self._check_period(quota, sent, renewed_now=renewed != renewals)
        self._forget_uncounted(quota, now, sent)
        reset = self._reset(pausing=True)
        if self._available <= 0 and reset is not None and reset > now:
            return reset - now
        return None

    def _forget_uncounted(self, quota: Quota, now: float, sent: float) -> None:
        """Drop the starts the server no longer counts: older than one period, and of those
        up to ``sent``, all but the last ``limit - remaining`` (its count when it took that
        request: a fixed window that reset forgot every start before it at once)."""
        if self._period is None:
            return
        history = self._history
        gone = bisect.bisect_right(history, now - self._period)
        if quota.limit is not None:
            counted = max(0, math.ceil(quota.limit - quota.remaining))
            gone = max(gone, bisect.bisect_right(history, sent) - counted)
        del history[:gone]

    def _check_period(self, quota: Quota, sent: float, renewed_now: bool) -> None:
        """Learn the period from the answer to the probe that opened a window (if it took
        the window's first unit, the window began with it: its length is the reset less the
        probe's start, rounded down, whole seconds being rounded up; or the policy's ``w``),
        and confirm it by the next window: a moving window gives back only what it took one
        period ago; a fixed one opens again with our probe and the same period. A fixed
        window that opens with another (one aligned to the clock) is timed by the resets
        announced from then on."""
        if quota.exact or quota.limit is None or self._deadline is None or not self._timed:
            return
        opened = quota.remaining >= quota.limit - 1
        period = quota.window or math.floor(self._deadline - sent)
        if self._period is None:
            # exactly one unit taken, this request's: nothing else is in the window
            if quota.remaining == quota.limit - 1 and 1.0 <= period <= MAX_PERIOD_S:
                self._period = period
                self._history.append(sent)
        elif renewed_now and self._renewed >= 2 and not self._confirmed:
            # opened at the reset announced (a whole second), the probe's way to the server
            # can round its reset up by one more
            took = self._deadline - sent
            self._confirmed = not opened or self._period <= took < self._period + 1 + RESET_MARGIN_S
            self._timed = self._confirmed

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
        self._renewed += 1
