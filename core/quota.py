"""The announced-quota rule of one host: pause at zero, pace before it, count what is in flight.

A server that announces its quota (``core/ratelimit_headers.py``) has told the client exactly
how many more requests it will take before a moment, so the client need never be refused:

* **Pause at zero.** When nothing remains, no request starts to the host until the reset, as
  for ``Retry-After`` (which wins where both are given: the caller passes it as the reset).
* **Pace before it.** The starts are spread so that what remains lasts until the reset: each
  start waits until the time left divided by the units left has passed since the previous one
  (never spending the quota at once and then waiting), and never faster than the policy's
  ``q/w`` when one is announced (the draft warns that ``r/t`` can overstate the rate).
* **Unless it covers the work.** Pacing spreads a window's quota over the window, which costs
  nothing while the work needs the next window anyway (it opens at the reset however this one
  was spent); once what remains covers all the host's work still to start (``backlog``,
  known once the source is fully read), spreading it would only end the run later, so it goes
  now. This is what the server said it takes before the reset, so the policy's rate does not
  hold it back either. Unknown work (``None``: the source is still being read) is paced.
* **In flight counts.** A response's remaining count does not know about the requests still on
  their way, so they are subtracted from it; every start after it takes one more.
* **Probe before knowing.** The first request to a host goes alone, and so does the first after
  a reset passes: a burst of every worker at a host whose quota is 5 would be refused before
  the first answer could say so. A host whose answer announces nothing is not held back again.

Answers arrive out of order, so each is judged by when its request was sent. The answer to a
request sent after the one the state comes from is news: its count (less what is in flight)
replaces the state's, and a count higher than the last one reported means the window reset
(or the bucket refilled), so its reset starts a new window. The answer to a request sent
earlier can only lower the count (``min``); one whose reset lies more than ``WINDOW_SLACK_S``
(``EXACT_SLACK_S`` for fractional resets) before the state's reports on a window already over
and is ignored. Within a window the
earliest estimate of its end is kept: integer resets are rounded, mostly up.

One object per host, owned and locked by ``LocalLimiter``; every method takes ``now`` (the
limiter's monotonic clock), so unit tests step it without sleeping.
"""

from __future__ import annotations

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
_NEVER = -1e18


class HostQuota:
    """What one host announced about its quota and the starts since (see the module)."""

    __slots__ = (
        "_answered",
        "_available",
        "_deadline",
        "_last_start",
        "_live",
        "_rate",
        "_reported",
        "_sent",
    )

    def __init__(self) -> None:
        self._answered = False  # the host answered at least once
        self._live = False  # an announcement is in force (until its deadline passes)
        self._available = math.inf  # units that may still start before the deadline
        self._deadline: float | None = None  # when the announced quota resets (monotonic)
        self._rate: float | None = None  # the policy's q/w, if announced
        self._last_start = _NEVER
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
            # t - last >= (deadline - t) / available  <=>  the even share of the time left
            earliest = (self._deadline + self._available * self._last_start) / (self._available + 1)
        if self._rate is not None:
            earliest = max(earliest, self._last_start + 1.0 / self._rate)
        return (earliest - now, PACE) if earliest > now else None

    def started(self, now: float) -> None:
        """A request to the host was granted (it counts against what remains)."""
        self._last_start = now
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
        estimate = quota.remaining - in_flight
        deadline = now + quota.reset_after if quota.reset_after is not None else None
        held = self._deadline
        if not self._live or self._expired(now) or deadline is None or held is None:
            self._replace(quota, estimate, deadline, sent)
        elif sent >= self._sent:  # news
            if quota.remaining > self._reported:
                self._replace(quota, estimate, deadline, sent)
            else:
                self._available = estimate
                self._deadline = min(held, deadline)
                self._sent, self._reported = sent, quota.remaining
        elif deadline >= held - (EXACT_SLACK_S if quota.exact else WINDOW_SLACK_S):  # older news
            self._available = min(self._available, estimate)
            self._deadline = min(held, deadline)
        self._rate = quota.policy_rate
        if self._available <= 0 and self._deadline is not None and self._deadline > now:
            return self._deadline - now
        return None

    def _replace(self, quota: Quota, estimate: float, deadline: float | None, sent: float) -> None:
        self._live = True
        self._available = estimate
        self._deadline = deadline
        self._sent, self._reported = sent, quota.remaining
