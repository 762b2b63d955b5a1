"""``--limit-rate``: body bytes per second over all workers together.

A token bucket on bytes, kept as a "theoretical arrival time" (GCRA): each piece of body a
worker has just read reserves its share of the line, ``len / rate`` seconds after the end of the
previous reservation (or now, if the line was idle), and the worker waits until its reservation
is no more than ``burst`` seconds ahead. Reservations are taken under one lock, so workers are
served in the order they read and the total never exceeds ``rate * elapsed + burst bytes``;
the wait itself happens outside the lock, on the run's cancel event, so a signal ends it.

The burst is short (``BURST_S`` of the rate) so that the rate holds over a few seconds, not
only on average: a 10 MB body at 1 MiB/s takes 10 s minus at most 50 ms. Paying after reading
(instead of before) keeps one lock operation per piece and no extra system call; to keep
pieces small against the rate, ``read_size`` says how much a worker should read at once.

This is separate from the request limiter (``limiter.py``): that one bounds request *starts*,
this one bounds *bytes*; a run may use either, both or neither.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

#: Seconds of the rate that may pass at once (a run starts with this credit).
BURST_S = 0.05
#: Smallest read while limiting: below this the per-read overhead would dominate.
MIN_READ = 1024


class BandwidthLimiter:
    """A thread-safe byte bucket of ``rate`` bytes per second; time is injected."""

    def __init__(
        self,
        rate: int,
        clock: Callable[[], float] = time.monotonic,
        wait: Callable[[float], object] = time.sleep,
        burst_s: float = BURST_S,
    ) -> None:
        if rate < 1:
            raise ValueError(f"rate must be at least 1 byte/s, not {rate}")
        self.rate = rate
        self._clock = clock
        self._wait = wait
        self._burst = burst_s
        self._lock = threading.Lock()
        self._tat = clock()  # the line starts idle: one burst of credit

    def reserve(self, size: int) -> float:
        """Account for ``size`` bytes just read; return how long the reader must now wait."""
        with self._lock:
            now = self._clock()
            self._tat = max(self._tat, now) + size / self.rate
            return max(0.0, self._tat - now - self._burst)

    def consume(self, size: int) -> None:
        """Account for ``size`` bytes and wait for them (the injected ``wait`` may end early,
        e.g. ``Event.wait`` on cancel)."""
        delay = self.reserve(size)
        if delay > 0:
            self._wait(delay)

    def read_size(self, largest: int) -> int:
        """How much one read should ask for: about a tenth of a second of the rate, so the
        waits stay short and even, at most ``largest``."""
        return max(MIN_READ, min(largest, self.rate // 10))
