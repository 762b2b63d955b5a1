"""A log of when a host's successes were answered, for the bare-window rule (``windows.py``).

A window gives a unit back one period after the server counted it, and the server had counted
it by the time its answer came back: so each success is logged at its answer, and a start is
allowed while fewer than the quota are logged within one period back. The log is coarse and
bounded (every host keeps one until its first refusal): answers within ``GRAIN_S`` share an
entry, counted at its last answer, and past ``MAX_ENTRIES`` the oldest entry is merged into the
next; both only ever count a unit later than it was, so a unit may come back late, never early.
"""

from __future__ import annotations

from collections import deque

#: Successes answered this close together share one log entry (at the later time: a unit is
#: given back at most this much late), and at most ``MAX_ENTRIES`` entries are kept (the oldest
#: merged into the next: later, so never early): memory per host is bounded (a few KiB), and
#: a window's burst of a few hundred milliseconds is kept to the grain.
GRAIN_S = 0.01
MAX_ENTRIES = 256


class SuccessLog:
    """When each success of a host was answered, coarsened to ``GRAIN_S`` and bounded.

    Two deques (an entry's last answer, its count) rather than a list per entry: every host
    keeps one until its first refusal, so its size per entry matters."""

    __slots__ = ("_counts", "_newest", "_times", "total")

    def __init__(self) -> None:
        self._times: deque[float] = deque()  # an entry's last answer (its units count there)
        self._counts: deque[int] = deque()
        self._newest = 0.0  # the first answer of the newest entry
        self.total = 0

    def add(self, now: float) -> None:
        self.total += 1
        times, counts = self._times, self._counts
        if times and now - self._newest < GRAIN_S:
            times[-1] = max(times[-1], now)
            counts[-1] += 1
            return
        times.append(now)
        counts.append(1)
        self._newest = now
        if len(times) > MAX_ENTRIES:
            times.popleft()
            merged = counts.popleft()
            counts[0] += merged

    def __len__(self) -> int:
        return len(self._times)

    def prune(self, before: float) -> None:
        """Forget the successes counted at or before ``before`` (out of any window)."""
        times, counts = self._times, self._counts
        while times and times[0] <= before:
            times.popleft()
            self.total -= counts.popleft()

    def since(self, after: float) -> int:
        """Successes counted later than ``after``."""
        return sum(c for t, c in zip(self._times, self._counts, strict=True) if t > after)

    def oldest(self) -> float | None:
        return self._times[0] if self._times else None

    def free_at(self, keep: int, after: float) -> float:
        """The time past which at most ``keep`` of the successes counted later than ``after``
        remain (add the period: when the units beyond ``keep`` are back)."""
        remaining = self.since(after)
        for answered, count in zip(self._times, self._counts, strict=True):
            if answered <= after:
                continue
            if remaining <= keep:
                break
            remaining -= count
            if remaining <= keep:
                return answered
        return after
