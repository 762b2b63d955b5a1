"""A token bucket on an injected clock: the one object behind every request-start rate.

``--qps`` (global), ``--per-host-qps`` and the rates the adaptive rules learn per host are each
one of these, owned and locked by ``LocalLimiter``.
"""

from __future__ import annotations


class TokenBucket:
    """A token bucket on an injected clock: ``rate`` tokens a second, at most ``capacity``.

    It starts with ``capacity`` tokens, so in any window of T seconds at most
    ``capacity + rate * T`` starts are granted (no startup burst beyond ``--burst``).
    Not thread-safe on its own; ``LocalLimiter`` guards it.
    """

    __slots__ = ("_tokens", "_updated", "capacity", "rate")

    def __init__(self, rate: float, capacity: float, now: float) -> None:
        self.rate = rate
        self.capacity = capacity
        self._tokens = capacity
        self._updated = now

    def _refill(self, now: float) -> None:
        if now > self._updated:
            self._tokens = min(self.capacity, self._tokens + (now - self._updated) * self.rate)
            self._updated = now

    def wait_time(self, now: float) -> float:
        """Seconds until one token is available (0 if one is there now)."""
        self._refill(now)
        missing = 1.0 - self._tokens
        return 0.0 if missing <= 1e-9 else missing / self.rate

    def take(self, now: float) -> None:
        self._refill(now)
        self._tokens -= 1.0

    def is_full(self, now: float) -> bool:
        self._refill(now)
        return self._tokens >= self.capacity

    def set_rate(self, rate: float, now: float) -> None:
        """Change the rate from now on; tokens earned so far at the old rate are kept."""
        self._refill(now)
        self.rate = rate
