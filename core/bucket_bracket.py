"""A bucket without burst: the bracket its spacing lies in, and the fastest the host is sent.

A token bucket without burst (nginx ``limit_req`` without ``burst``) judges each request against
the last one it accepted: closer than ``1/rate`` is refused. So the spacing between the starts
of two successive successes is one it takes, and the spacing of a refused start from the last
success before it is one it does not; the bucket's own spacing lies between the closest taken
and the widest refused. ``AdaptiveRate`` (``core/adaptive.py``) finds that such a host is a
bucket (it took one request of the opening burst) and ramps it until a paced refusal; this
object keeps what the ramp and later answers measured and the top the host is held at.

* ``MIN_GAP_S = 2 ms``: accepted starts closer than that are one burst, not a spacing (nginx
  counts whole milliseconds).
* ``BUCKET_MARGIN = 0.95`` under the geometric mean of the closest spacing taken and the widest
  refused: a ramp's last step is 15 to 40 % (it doubles per quarter second, a few starts at
  20 r/s), so holding at the spacing taken would give that much of the rate away for the rest
  of the run; the margin covers nginx's whole milliseconds and the client's send jitter (a
  start is granted, then sent by a worker): 5 % of 20 ms at 50 r/s. Never slower than the
  spacing taken.
* **A later refusal is a bisection**: refused below the spacing taken, it narrows the bracket;
  refused at a spacing taken before, it is jitter. Either way the top drops by at least
  ``CUT_MIN``, or by the caller's deeper cut if the last such cut, under ``REPEATED_S`` ago,
  did not end it (under heavy load the send jitter reached 5 ms: three 5 % cuts, three pauses,
  where one cut of 10 % and a 5 % one took two). After a deeper cut the host creeps back to
  the top by ``BUCKET_CREEP`` per second of clean running, no further.
* **The top is narrowed from above a few steps, then held.** Every refusal pauses the host for
  its ``Retry-After``, so the top is never crept past (an ordinary probe would find the limit
  again and again, a pause each time). Instead, after ``BUCKET_PROBE_AFTER_S`` of clean running
  at the top, the host takes one step: to the geometric mean of the held spacing and the widest
  refused, never within ``BUCKET_PROBE_MARGIN`` of the refused one (a millisecond of send jitter
  and nginx's whole milliseconds at 20 r/s); a step of under ``BUCKET_PROBE_MIN_STEP`` is not
  taken. Each step starts from a spacing the bucket took; the first later refusal (a step too
  close, or the send jitter of a loaded machine) ends the steps for good.

Time is injected (the limiter's monotonic clock); not thread-safe (``LocalLimiter`` locks it).
"""

from __future__ import annotations

import itertools
import math
from collections import deque

BUCKET_MARGIN = 0.95
#: A later refusal cuts the top by at least this much; by the caller's deeper cut when the
#: last such cut was under ``REPEATED_S`` ago.
CUT_MIN = 0.95
REPEATED_S = 10.0
#: A top cut deeper than ``CUT_MIN`` grows back this share of its rate per second of clean
#: running, up to the top.
BUCKET_CREEP = 0.02
#: The top's narrowing steps (see the module).
BUCKET_PROBE_AFTER_S = 2.0
BUCKET_PROBE_MARGIN = 1.06
BUCKET_PROBE_MIN_STEP = 0.01
#: Starts closer than this are one burst, not a spacing a bucket accepted.
MIN_GAP_S = 0.002
_START_WINDOW = 64


class BucketBracket:
    """The spacings a host's bucket without burst took and refused, and its top (requests/s)."""

    __slots__ = (
        "_accepted",
        "_last_cut",
        "_refused",
        "_stepped_at",
        "_steps_over",
        "_taken",
        "top",
    )

    def __init__(self) -> None:
        #: When the requests of the recent successes started.
        self._accepted: deque[float] = deque(maxlen=_START_WINDOW)
        self._refused = 0.0  # the widest spacing refused
        self._taken = math.inf  # the closest spacing taken
        self._last_cut = -math.inf  # when a later refusal last cut the top
        #: The fastest the host is sent once the bucket is found (inf: not found), since when,
        #: and whether a later refusal ended its narrowing.
        self.top = math.inf
        self._stepped_at = -math.inf
        self._steps_over = False

    def accepted(self, started: float) -> None:
        """A success answered a request started at ``started``."""
        self._accepted.append(started)

    def accepted_gap(self, since: float) -> float | None:
        """The shortest gap between the starts of two successive successes that started at
        or after ``since``: the bucket's rate is at least one over it (None: fewer than two)."""
        starts = sorted(t for t in self._accepted if t >= since)
        gaps = [b - a for a, b in itertools.pairwise(starts) if b - a > MIN_GAP_S]
        return min(gaps) if gaps else None

    def bracket(self, started: float, gap: float | None) -> float | None:
        """A request started at ``started`` was refused: its spacing from the last success
        before it is below the bucket's, the closest spacing taken (``gap``, or one taken
        earlier) is not. Returns ``BUCKET_MARGIN`` under the geometric mean of the closest
        taken and the widest refused so far, never slower than the spacing taken; None when
        the two contradict each other (the server's clock resolution, the client's jitter)
        or are unknown."""
        if gap is not None:
            self._taken = min(self._taken, gap)
        last = max((t for t in self._accepted if t < started), default=None)
        if last is None or started - last <= MIN_GAP_S:
            return None
        refused = max(self._refused, started - last)
        taken = self._taken
        if not refused < taken < math.inf:
            return None
        self._refused = refused
        return max(BUCKET_MARGIN / math.sqrt(refused * taken), 1.0 / taken)

    def found(self, top: float, now: float) -> None:
        """The paced refusal set the top: the host is held there from ``now``."""
        self.top = top
        self._stepped_at = now

    def refused_again(
        self, now: float, started: float, rate: float, since: float, deeper: float
    ) -> float:
        """A found bucket refused a request started at ``started`` while the host was sent at
        ``rate``: narrow the bracket (successes since ``since``), lower the top, end the
        steps. Returns the new rate: a ``CUT_MIN`` cut, ``deeper`` if the last one was recent,
        never above the narrowed bracket."""
        narrowed = self.bracket(started, self.accepted_gap(since)) or math.inf
        self.top = min(min(self.top, rate) * CUT_MIN, narrowed)
        self._steps_over = True
        step = deeper if now - self._last_cut < REPEATED_S else CUT_MIN
        self._last_cut = now
        return min(narrowed, rate * step)

    def raised(self, now: float, rate: float, elapsed: float, resumed_at: float) -> float:
        """The rate after ``elapsed`` seconds of clean running at ``rate``: back up to the
        top by ``BUCKET_CREEP``, and at the top, after ``BUCKET_PROBE_AFTER_S`` since the
        last step or pause (``resumed_at``), one narrowing step (see the module)."""
        rate = max(rate, min(self.top, rate * (1.0 + BUCKET_CREEP * elapsed)))
        if self._steps_over or rate < self.top:
            return rate
        if now - max(self._stepped_at, resumed_at) < BUCKET_PROBE_AFTER_S:
            return rate
        refused, held = self._refused, 1.0 / self.top
        step = max(math.sqrt(refused * held), refused * BUCKET_PROBE_MARGIN)
        if refused <= 0 or step > held * (1.0 - BUCKET_PROBE_MIN_STEP):
            self._steps_over = True
            return rate
        self.top = 1.0 / step
        self._stepped_at = now
        return self.top
