"""The practice server: a local HTTP/1.1 keep-alive server that acts like the servers users fetch.

Tests, benchmarks, ``poolfetch serve`` and ``poolfetch demo`` all use this one server, so what
the tests assert is what the demo shows and what the benchmarks measure. It listens on loopback
and answers with fixed, large, slow, failing, redirecting, conditional, gzipped, reset and
stalled responses (the paths are listed on ``PracticeServer``). It can rate-limit itself
server-wide (429 with Retry-After), and it records every request it received (``requests()``),
so a test can check what a client really did: how many connections, which headers, how fast.

Stdlib only, and independent of the engine (its own token bucket), so it checks the engine
instead of sharing its bugs.

Per client address it can also cap requests being served, count fixed or moving windows that
announce their quota in headers, or refuse like a token bucket without burst
(``ServerOptions.limits``, see ``core/practice_limits.py``).

This module holds what users of the server touch: ``ServerOptions``, ``PracticeServer`` (its
lifecycle, request log, counters, server-wide rate limit and resource versions) and, re-exported,
``RequestLogEntry``. The rest lives in ``core/practice_http.py`` (connections, parsing, logging
and writing answers), ``core/practice_routes.py`` (what each path answers) and
``core/practice_ranges.py`` (Range requests and the bytes of ``/large``).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass
from types import TracebackType

from poolfetch.core.practice_http import CHUNK_SIZE, STALL_MAX_S, RequestLogEntry, TrackingServer
from poolfetch.core.practice_limits import NO_LIMITS, ServerLimiter, ServerLimits
from poolfetch.core.practice_routes import FIXED_BODY, MAX_BODY_BYTES, MAX_DELAY_MS, RouteHandler

__all__ = [
    "CHUNK_SIZE",
    "FIXED_BODY",
    "MAX_BODY_BYTES",
    "MAX_DELAY_MS",
    "MAX_LOG_ENTRIES",
    "STALL_MAX_S",
    "PracticeServer",
    "RequestLogEntry",
    "ServerOptions",
]

MAX_LOG_ENTRIES = 1_000_000
_POLL_S = 0.1
_STOP_JOIN_S = 1.5


@dataclass(frozen=True, slots=True)
class ServerOptions:
    """How the practice server listens and whether it rate-limits itself."""

    host: str = "127.0.0.1"
    port: int = 0  # 0: pick a free port
    rate_limit: float | None = None  # server-wide requests/s over all paths; excess -> 429
    rate_burst: int = 1  # token bucket capacity for rate_limit (starts full)
    retry_after: str = "1"  # Retry-After of rate-limit 429s; "date": an HTTP-date 1 s ahead
    quiet: bool = True  # no per-request log lines on stderr
    limits: ServerLimits = NO_LIMITS  # per-client limiters (core/practice_limits.py)

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port out of range: {self.port}")
        if self.rate_limit is not None and not self.rate_limit > 0:
            raise ValueError(f"rate_limit must be > 0, got {self.rate_limit}")
        if self.rate_burst < 1:
            raise ValueError(f"rate_burst must be >= 1, got {self.rate_burst}")


class PracticeServer:
    """A threaded HTTP/1.1 keep-alive server on loopback that records what it receives.

    Paths (any method: GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS; a request body is read, and
    its method, SHA-256, size and Content-Type go to the request log, ``/echo`` answers them):
    ``/`` and ``/fixed`` (200 bytes), ``/bytes/N``, ``/delay/MS``, ``/status/CODE``,
    ``/fail/K/ID?status=503&retry_after=S|date&seconds=S`` (the first K requests of that exact
    path fail), ``/redirect/N``, ``/redirect-to?url=URL&status=302``, ``/headers`` (JSON),
    ``/echo`` (JSON), ``/etag/ID`` (conditional GET, see ``set_version``), ``/gzip/N``,
    ``/reset`` (RST), ``/reset-mid/N``, ``/stall-headers``, ``/stall-body/N``, ``/short/N``,
    ``/large/ID/N?rate=B&cut=K&stall=1&ranges=0&validators=date|none`` (Range, a trickle)
    and ``/_stats``.
    Use it as a context manager, or ``start()`` / ``stop()``. A stopped server cannot restart.
    """

    def __init__(self, options: ServerOptions | None = None) -> None:
        self.options = options if options is not None else ServerOptions()
        self.stop_event = threading.Event()
        self._lock = threading.Lock()
        self._log: deque[RequestLogEntry] = deque(maxlen=MAX_LOG_ENTRIES)
        self._requests = 0
        self.limits = ServerLimiter(self.options.limits)
        self._versions: dict[str, int] = {}
        self._failures: dict[str, int] = {}
        self._tokens = float(self.options.rate_burst)  # the rate-limit bucket starts full
        self._refilled = time.monotonic()
        self._httpd: TrackingServer | None = None
        self._thread: threading.Thread | None = None
        self._serving = False
        self._stopped = False

    # -- lifecycle ------------------------------------------------------------------------

    def _bind(self) -> TrackingServer:
        if self._stopped:
            raise RuntimeError("this PracticeServer was stopped; create a new one")
        if self._httpd is None:
            address = (self.options.host, self.options.port)
            self._httpd = TrackingServer(self, address, RouteHandler)
        return self._httpd

    def start(self) -> PracticeServer:
        """Bind and serve from a daemon thread; returns self (a no-op if already serving)."""
        httpd = self._bind()
        if not self._serving:
            self._serving = True
            self._thread = threading.Thread(
                target=httpd.serve_forever,
                args=(_POLL_S,),
                name=f"practice-server-{self.port}",
                daemon=True,
            )
            self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve until ``stop()`` (or Ctrl-C, which the caller handles) in this thread.

        After ``start()`` this just blocks until the server is stopped.
        """
        if self._serving:
            while not self.stop_event.wait(0.5):
                pass
            return
        httpd = self._bind()
        self._serving = True
        httpd.serve_forever(_POLL_S)

    def stop(self) -> None:
        """Stop listening, close every client connection (stalled ones too), join the threads.

        Idempotent; returns within about two seconds whatever the handlers are doing.
        """
        if self._stopped:
            return
        self._stopped = True
        self.stop_event.set()
        httpd = self._httpd
        if httpd is None:
            return
        deadline = time.monotonic() + _STOP_JOIN_S
        if self._serving:
            httpd.shutdown()
        httpd.server_close()
        httpd.close_clients()
        if self._thread is not None:
            self._thread.join(max(0.0, deadline - time.monotonic()))
        httpd.join_handlers(deadline)

    def __enter__(self) -> PracticeServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The bound port (the configured one before ``start()``)."""
        if self._httpd is None:
            return self.options.port
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        """Base URL without a trailing slash, e.g. ``http://127.0.0.1:41234``."""
        return f"http://{self.options.host}:{self.port}"

    # -- what tests look at ---------------------------------------------------------------

    @property
    def connections_opened(self) -> int:
        """TCP connections accepted so far."""
        return 0 if self._httpd is None else self._httpd.connections

    def requests(self) -> list[RequestLogEntry]:
        """A copy of the request log (the last MAX_LOG_ENTRIES requests), oldest first."""
        with self._lock:
            return list(self._log)

    def reset_log(self) -> None:
        """Forget the logged requests (counters, failures and versions are kept)."""
        with self._lock:
            self._log.clear()

    def set_version(self, id: str, version: int) -> None:
        """Set the version ``/etag/ID`` serves (default 1): new ETag and Last-Modified."""
        with self._lock:
            self._versions[id] = version

    def stats(self) -> dict[str, int]:
        """What ``/_stats`` answers: connections accepted, requests other than ``/_stats``,
        and what the per-client limiters accepted and refused (``ServerLimiter.stats``)."""
        with self._lock:
            counts = {"connections": self.connections_opened, "requests": self._requests}
        return {**counts, **self.limits.stats()}

    # -- used by the handlers -------------------------------------------------------------

    def record(self, entry: RequestLogEntry) -> None:
        """Append to the request log (called just before the answer is written)."""
        with self._lock:
            self._log.append(entry)
            if entry.path.partition("?")[0] != "/_stats":
                self._requests += 1

    def admit(self) -> bool:
        """Take a token from the server-wide rate limit (always True without one)."""
        rate = self.options.rate_limit
        if rate is None:
            return True
        with self._lock:
            now = time.monotonic()
            elapsed, self._refilled = now - self._refilled, now
            self._tokens = min(self.options.rate_burst, self._tokens + elapsed * rate)
            if self._tokens < 1.0 - 1e-9:
                return False
            self._tokens -= 1.0
            return True

    def count_failure(self, key: str) -> int:
        """Count one more request of a ``/fail`` path; returns the count including it."""
        with self._lock:
            seen = self._failures.get(key, 0) + 1
            self._failures[key] = seen
            return seen

    def version(self, id: str) -> int:
        """The current version of ``/etag/ID``."""
        with self._lock:
            return self._versions.get(id, 1)
