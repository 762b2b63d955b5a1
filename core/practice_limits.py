"""The practice server's per-client limiters: connection cap, fixed and moving windows, bucket.

These are the kinds of limit real servers put in front of their clients, so users and tests can
rehearse against them without a network:

* a cap on requests *being served* per client address, like nginx ``limit_conn`` (its default
  answer is ``503`` without ``Retry-After``; ``429`` + ``Retry-After: 1`` on request);
* a fixed window (``limit`` requests per ``window_s``, the window starting at the first request
  after the previous one ended) or a moving window (a sliding log: at most ``limit`` accepted
  requests in any ``window_s``), the way web-framework limiters work, each announcing its state
  in one of the header dialects in ``DIALECTS`` (or none: a bare ``429``);
* a token bucket without burst, like nginx ``limit_req`` without ``burst``: a request closer
  than ``1 / rate`` to the last accepted one is refused (``429`` + ``Retry-After: 1``).

Stdlib only, with its own clocks and none of the engine's code, so it checks the engine instead of
sharing its bugs. It counts what it accepted and refused and keeps a log of its decisions, so a
test can assert "never more than the quota in any window" from the server's side.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

Clock = Callable[[], float]
Headers = tuple[tuple[str, str], ...]

#: Header dialects a window can announce. ``x-ratelimit``: ``X-RateLimit-Limit/-Remaining/-Reset``
#: (reset in seconds from now); ``x-ratelimit-unix``: the same with reset as a Unix time;
#: ``ratelimit``: ``RateLimit-Limit/-Remaining/-Reset`` (earlier IETF drafts, seconds);
#: ``ietf``: ``RateLimit: "default";r=R;t=T`` and ``RateLimit-Policy: "default";q=Q;w=W`` (the
#: current IETF httpapi draft's structured fields); ``reset-after``: ``X-RateLimit-Limit``,
#: ``-Remaining`` and ``X-RateLimit-Reset-After`` (seconds with milliseconds, as Discord sends).
DIALECTS = ("none", "x-ratelimit", "x-ratelimit-unix", "ratelimit", "ietf", "reset-after")
WINDOW_KINDS = ("fixed", "moving")
CONN_STATUSES = (503, 429)
MAX_DECISIONS = 1_000_000
MAX_LIMIT = 10**9
MAX_WINDOW_S = 86_400.0
MAX_DELAY_MS = 60_000
_EPSILON = 1e-9


@dataclass(frozen=True, slots=True)
class ServerLimits:
    """Which per-client limiters the practice server applies (all off by default).

    They apply in this order: bucket, window, connection cap; the first refusal answers.
    ``delay_ms`` delays every accepted request (a slow backend), so requests overlap and a
    connection cap is reached.
    """

    conn_limit: int | None = None  # requests being served at once per client address
    conn_status: int = 503  # 503 (nginx's default, no Retry-After) or 429 + Retry-After: 1
    delay_ms: int = 0  # backend time of every accepted request
    window: str | None = None  # "fixed" | "moving"
    window_limit: int = 0  # accepted requests per window
    window_s: float = 1.0  # window length in seconds
    headers: str = "none"  # one of DIALECTS, on every answer of a windowed server
    retry_after: bool = False  # a window's 429 carries Retry-After (seconds to the reset)
    bucket_rate: float | None = None  # requests/s of a token bucket without burst

    def __post_init__(self) -> None:
        if self.conn_limit is not None and not 1 <= self.conn_limit <= MAX_LIMIT:
            raise ValueError(f"conn_limit must be 1..{MAX_LIMIT}, got {self.conn_limit}")
        if self.conn_status not in CONN_STATUSES:
            raise ValueError(f"conn_status must be 503 or 429, got {self.conn_status}")
        if not 0 <= self.delay_ms <= MAX_DELAY_MS:
            raise ValueError(f"delay_ms must be 0..{MAX_DELAY_MS}, got {self.delay_ms}")
        if self.window is not None and self.window not in WINDOW_KINDS:
            raise ValueError(f"window must be 'fixed' or 'moving', got {self.window!r}")
        if self.window is not None and not 1 <= self.window_limit <= MAX_LIMIT:
            raise ValueError(f"window_limit must be 1..{MAX_LIMIT}, got {self.window_limit}")
        if not 0 < self.window_s <= MAX_WINDOW_S:
            raise ValueError(f"window_s must be > 0 and <= {MAX_WINDOW_S:g}, got {self.window_s}")
        if self.headers not in DIALECTS:
            raise ValueError(f"headers must be one of {', '.join(DIALECTS)}; got {self.headers!r}")
        if self.bucket_rate is not None and not 0 < self.bucket_rate <= MAX_LIMIT:
            raise ValueError(f"bucket_rate must be > 0, got {self.bucket_rate}")

    @property
    def active(self) -> bool:
        """Whether any limiter (or the backend delay) is on."""
        return bool(
            self.conn_limit is not None
            or self.window is not None
            or self.bucket_rate is not None
            or self.delay_ms
        )


NO_LIMITS = ServerLimits()


@dataclass(frozen=True, slots=True)
class Decision:
    """One request as a limiter judged it; ``reason`` is empty for an accepted one."""

    time: float  # the limiter's clock when it decided
    client: str
    accepted: bool
    reason: str = ""  # "conn", "window" or "bucket"


@dataclass(slots=True)
class Verdict:
    """The answer to ``ServerLimiter.enter``: refused (``status`` set) or accepted.

    ``headers`` go on the answer either way (the announced quota). An accepted verdict holds a
    connection-cap slot until ``ServerLimiter.leave`` (idempotent).
    """

    client: str
    status: int = 0  # 0: accepted
    body: bytes = b""
    headers: Headers = ()
    holds_slot: bool = False

    @property
    def refused(self) -> bool:
        return self.status != 0


@dataclass(slots=True)
class _Window:
    start: float = -math.inf  # fixed: when the current window began
    count: int = 0  # fixed: accepted in the current window
    log: deque[float] = field(default_factory=deque)  # moving: accepted times in the window


class ServerLimiter:
    """Applies ``ServerLimits`` per client address; thread-safe; time from ``clock``.

    ``clock`` is monotonic seconds (decisions, windows); ``wall`` is Unix time, read only for
    resets announced as a Unix time.
    """

    def __init__(
        self, limits: ServerLimits, clock: Clock = time.monotonic, wall: Clock = time.time
    ) -> None:
        self.limits = limits
        self._clock = clock
        self._wall = wall
        self._lock = threading.Lock()
        self._in_flight: dict[str, int] = {}
        self._windows: dict[str, _Window] = {}
        self._last_accepted: dict[str, float] = {}
        self._decisions: deque[Decision] = deque(maxlen=MAX_DECISIONS)
        self._accepted = 0
        self._refused: dict[str, int] = {"conn": 0, "window": 0, "bucket": 0}
        self._peak = 0

    # -- what the server's handlers call --------------------------------------------------

    def enter(self, client: str) -> Verdict:
        """Judge one request from ``client`` (its address): accept it or say how to refuse."""
        limits = self.limits
        with self._lock:
            now = self._clock()
            if limits.bucket_rate is not None and not self._bucket_admits(client, now):
                return self._refuse(client, now, "bucket", 429, (("Retry-After", "1"),))
            headers: Headers = ()
            if limits.window is not None:
                accepted, remaining, reset = self._window_take(client, now)
                headers = self._announce(remaining, reset)
                if not accepted:
                    if limits.retry_after:
                        headers = (*headers, ("Retry-After", str(max(1, math.ceil(reset)))))
                    return self._refuse(client, now, "window", 429, headers)
            holds = False
            if limits.conn_limit is not None:
                busy = self._in_flight.get(client, 0)
                if busy >= limits.conn_limit:
                    if limits.window is not None:
                        self._window_untake(client)
                    extra: Headers = (("Retry-After", "1"),) if limits.conn_status == 429 else ()
                    return self._refuse(client, now, "conn", limits.conn_status, extra)
                self._in_flight[client] = busy + 1
                self._peak = max(self._peak, busy + 1)
                holds = True
            if limits.bucket_rate is not None:
                self._last_accepted[client] = now
            self._accepted += 1
            self._decisions.append(Decision(now, client, True))
            return Verdict(client, headers=headers, holds_slot=holds)

    def leave(self, verdict: Verdict) -> None:
        """The accepted request is answered: free its connection-cap slot (once)."""
        if not verdict.holds_slot:
            return
        verdict.holds_slot = False
        with self._lock:
            left = self._in_flight.get(verdict.client, 0) - 1
            if left > 0:
                self._in_flight[verdict.client] = left
            else:
                self._in_flight.pop(verdict.client, None)

    # -- what tests look at ---------------------------------------------------------------

    def stats(self) -> dict[str, int]:
        """Counts since start: accepted, refused (in all and by limiter), peak served at once."""
        with self._lock:
            refused = sum(self._refused.values())
            counts = {f"limit_refused_{k}": v for k, v in self._refused.items()}
            return {
                "limit_accepted": self._accepted,
                "limit_refused": refused,
                **counts,
                "limit_peak_in_flight": self._peak,
            }

    def decisions(self) -> list[Decision]:
        """Every decision (the last MAX_DECISIONS), oldest first."""
        with self._lock:
            return list(self._decisions)

    # -- the rules --------------------------------------------------------------------------

    def _refuse(
        self, client: str, now: float, reason: str, status: int, headers: Headers
    ) -> Verdict:
        self._refused[reason] += 1
        self._decisions.append(Decision(now, client, False, reason))
        body = b"too many requests\n" if status == 429 else b"service temporarily unavailable\n"
        return Verdict(client, status=status, body=body, headers=headers)

    def _bucket_admits(self, client: str, now: float) -> bool:
        """Burst 0: accepted only if at least 1/rate after the last accepted request."""
        assert self.limits.bucket_rate is not None
        last = self._last_accepted.get(client)
        return last is None or now - last >= 1.0 / self.limits.bucket_rate - _EPSILON

    def _window_take(self, client: str, now: float) -> tuple[bool, int, float]:
        """Count one request against the client's window: (accepted, remaining, reset in s)."""
        limit, length = self.limits.window_limit, self.limits.window_s
        state = self._windows.setdefault(client, _Window())
        if self.limits.window == "fixed":
            if now >= state.start + length - _EPSILON:
                state.start, state.count = now, 0
            accepted = state.count < limit
            state.count += accepted
            return accepted, limit - state.count, state.start + length - now
        log = state.log
        while log and log[0] <= now - length + _EPSILON:
            log.popleft()
        accepted = len(log) < limit
        if accepted:
            log.append(now)
        return accepted, limit - len(log), log[0] + length - now

    def _window_untake(self, client: str) -> None:
        """Give back a window slot taken by a request the connection cap then refused."""
        state = self._windows[client]
        if self.limits.window == "fixed":
            state.count -= 1
        else:
            state.log.pop()

    def _announce(self, remaining: int, reset: float) -> Headers:
        """The quota in the configured dialect; resets in whole seconds are rounded up, so a
        client that waits for them is never early."""
        limit = str(self.limits.window_limit)
        left = str(max(0, remaining))
        seconds = str(max(0, math.ceil(reset - _EPSILON)))
        match self.limits.headers:
            case "x-ratelimit":
                return (
                    ("X-RateLimit-Limit", limit),
                    ("X-RateLimit-Remaining", left),
                    ("X-RateLimit-Reset", seconds),
                )
            case "x-ratelimit-unix":
                at = str(math.ceil(self._wall() + reset))
                return (
                    ("X-RateLimit-Limit", limit),
                    ("X-RateLimit-Remaining", left),
                    ("X-RateLimit-Reset", at),
                )
            case "ratelimit":
                return (
                    ("RateLimit-Limit", limit),
                    ("RateLimit-Remaining", left),
                    ("RateLimit-Reset", seconds),
                )
            case "ietf":
                window = str(max(1, math.ceil(self.limits.window_s)))
                return (
                    ("RateLimit", f'"default";r={left};t={seconds}'),
                    ("RateLimit-Policy", f'"default";q={limit};w={window}'),
                )
            case "reset-after":
                return (
                    ("X-RateLimit-Limit", limit),
                    ("X-RateLimit-Remaining", left),
                    ("X-RateLimit-Reset-After", f"{max(0.0, reset):.3f}"),
                )
        return ()
