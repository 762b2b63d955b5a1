"""Request-start limits kept in this process: global and per-host rates, pauses, in-flight.

A connection pool bounds sockets; this bounds *request starts* per unit of time, the server's
contract. The scheduler asks ``try_acquire(host)`` before it hands an attempt to a worker (every
attempt, retries included) and calls ``release(host)`` when the attempt is over. The answer is
never a sleep: it is "go now" (the tokens are taken) or "ask again in N seconds", so the caller
can give the worker another host's job meanwhile.

``LocalLimiter`` implements ``RequestLimiter`` (``core/limiter_api.py``, the seam the scheduler
depends on) with its state in this process: a ``TokenBucket`` per rate, and per host the
learned rules (``adaptive``, ``concurrency``, ``quota``, ``windows``). Time is injected
(``clock``) so unit tests step it.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from poolfetch.core.adaptive import AdaptiveRate
from poolfetch.core.concurrency import AdaptiveConcurrency
from poolfetch.core.config import RateLimit
from poolfetch.core.limiter_api import (
    GLOBAL,
    GRANTED,
    HOST_BUSY,
    HOST_PAUSED,
    HOST_QUOTA,
    HOST_RATE,
    Admission,
    LimiterSnapshot,
)
from poolfetch.core.quota import PACE, PAUSE, PROBE, HostQuota
from poolfetch.core.ratelimit_headers import Quota
from poolfetch.core.token_bucket import TokenBucket
from poolfetch.core.windows import CLOSED, PROBING, BareWindow

Clock = Callable[[], float]
#: Attempts of a host still to start (queued or waiting for a retry), or None when more may
#: come (the source is not fully read): what the quota rule needs to know it may stop pacing.
Backlog = Callable[[str], int | None]
log = logging.getLogger(__name__)

#: A per-host slot with nothing left to remember is dropped after this long without use.
IDLE_EVICT_SECONDS = 30.0


#: How the quota rule's waits read to the scheduler: a spent quota is a pause (held to
#: ``--max-retry-after`` like one), a probe waits for an answer (a release wakes the host).
_QUOTA_WAITS = {PAUSE: HOST_PAUSED, PACE: HOST_QUOTA, PROBE: HOST_BUSY}
#: The same for a bare-429 window: spent (or between probes) is a pause, a probe is out.
_WINDOW_WAITS = {CLOSED: HOST_PAUSED, PROBING: HOST_BUSY}


@dataclass(slots=True)
class _HostSlot:
    """Runtime state of one host; owned and written only by ``LocalLimiter``."""

    bucket: TokenBucket | None
    in_flight: int = 0
    paused_until: float = 0.0
    last_used: float = 0.0
    adaptive: AdaptiveRate | None = None
    concurrency: AdaptiveConcurrency | None = None
    quota: HostQuota | None = None
    window: BareWindow | None = None


class LocalLimiter:
    """All limits of one process, thread-safe behind one lock.

    Per-host slots are created on first use and dropped once idle and at rest (no request in
    flight, no pause, bucket full, adaptive rate back at its ceiling), so a list of 100,000
    hosts keeps only the active ones in memory.
    """

    def __init__(
        self,
        limits: RateLimit,
        clock: Clock = time.monotonic,
        workers: int | None = None,
        backlog: Backlog | None = None,
    ) -> None:
        """``backlog``: the caller's count of each host's work still to start (see
        ``Backlog``; without it the work is taken as unknown, and a quota is always paced)."""
        self._limits = limits
        self._backlog = backlog
        caps = [c for c in (limits.per_host_connections, workers) if c is not None]
        #: The most requests in flight to one host the adaptive concurrency may allow.
        self._concurrency_ceiling = min(caps) if caps else None
        self._clock = clock
        self._lock = threading.Lock()
        now = clock()
        self._global = (
            TokenBucket(limits.qps, limits.burst, now) if limits.qps is not None else None
        )
        self._hosts: dict[str, _HostSlot] = {}
        self._next_sweep = now + IDLE_EVICT_SECONDS

    @property
    def limits(self) -> RateLimit:
        return self._limits

    def _slot(self, host: str, now: float) -> _HostSlot:
        slot = self._hosts.get(host)
        if slot is None:
            per_host = self._limits.per_host_qps
            bucket = TokenBucket(per_host, self._limits.burst, now) if per_host else None
            slot = _HostSlot(bucket=bucket, last_used=now)
            if self._limits.adaptive:
                slot.adaptive = AdaptiveRate(ceiling=per_host or self._limits.qps)
                slot.window = BareWindow()
                if self._concurrency_ceiling is not None:
                    slot.concurrency = AdaptiveConcurrency(
                        self._concurrency_ceiling, self._limits.per_host_connections
                    )
            if self._limits.rate_headers:
                slot.quota = HostQuota()
            self._hosts[host] = slot
        return slot

    def try_acquire(self, host: str) -> Admission:
        with self._lock:
            now = self._clock()
            if now >= self._next_sweep:
                self._evict_idle(now)
            slot = self._slot(host, now)
            if slot.paused_until > now:
                return Admission(slot.paused_until - now, HOST_PAUSED)
            cap = self._limits.per_host_connections
            if slot.concurrency is not None:
                cap = slot.concurrency.cap_at(now)
            if cap is not None and slot.in_flight >= cap:
                return Admission(math.inf, HOST_BUSY)
            held = (
                slot.quota.wait(now, slot.in_flight, self._backlog_of(host))
                if slot.quota is not None
                else None
            )
            if held is not None:
                return Admission(held[0], _QUOTA_WAITS[held[1]])
            window = slot.window.wait(now, slot.in_flight) if slot.window is not None else None
            if window is not None:
                return Admission(window[0], _WINDOW_WAITS[window[1]])
            if slot.bucket is not None:
                wait = slot.bucket.wait_time(now)
                if wait > 0:
                    return Admission(wait, HOST_RATE)
            if self._global is not None:
                wait = self._global.wait_time(now)
                if wait > 0:
                    return Admission(wait, GLOBAL)
                self._global.take(now)
            if slot.bucket is not None:
                slot.bucket.take(now)
            slot.in_flight += 1
            slot.last_used = now
            if slot.adaptive is not None:
                slot.adaptive.note_start(now)
            if slot.concurrency is not None:
                slot.concurrency.started(now)
            if slot.quota is not None:
                slot.quota.started(now)
            if slot.window is not None:
                slot.window.started(now)
            return GRANTED

    def _backlog_of(self, host: str) -> int | None:
        return self._backlog(host) if self._backlog is not None else None

    def release(self, host: str) -> None:
        with self._lock:
            slot = self._hosts.get(host)
            if slot is not None and slot.in_flight > 0:
                slot.in_flight -= 1
                slot.last_used = self._clock()

    def pause_host(self, host: str, seconds: float) -> None:
        with self._lock:
            now = self._clock()
            self._pause(self._slot(host, now), seconds, now)

    def _pause(self, slot: _HostSlot, seconds: float, now: float) -> None:
        window = slot.window
        if window is not None and window.holds:
            # a backoff grown while a bare window stays closed would find it late: its
            # probes (and its starts, once open) are timed by the window rule
            seconds = min(seconds, window.probe_in(now))
        slot.paused_until = max(slot.paused_until, now + seconds)
        slot.last_used = now
        if slot.adaptive is not None:
            slot.adaptive.note_pause(slot.paused_until, now)
        if slot.concurrency is not None:
            slot.concurrency.note_pause(seconds)

    def record_quota(self, host: str, quota: Quota | None, sent: float) -> None:
        """Feed the host's quota rule; a spent quota pauses the host until its reset, as a
        ``Retry-After`` does. Call after ``release`` (the requests still in flight count)."""
        with self._lock:
            slot = self._hosts.get(host)
            if slot is None or slot.quota is None:
                return
            now = self._clock()
            pause = slot.quota.observe(quota, now, slot.in_flight, sent)
            if pause is not None:
                self._pause(slot, pause, now)

    def record_response(
        self,
        host: str,
        throttled: bool,
        *,
        overloaded: bool = False,
        started: float | None = None,
        bare: bool = False,
    ) -> None:
        with self._lock:
            slot = self._hosts.get(host)
            if slot is not None and slot.quota is not None and throttled:
                slot.quota.refused()
            if slot is None or slot.adaptive is None:
                return
            now = self._clock()
            sent = now if started is None else started
            # a host that announces its quota is the quota rule's, bare 429s and all
            announced = slot.quota is not None and slot.quota.available < math.inf
            window = slot.window
            if window is not None:
                held = window.holds
                refusal = window.answered(
                    throttled and bare and not announced,
                    not throttled and not overloaded,
                    sent,
                    now,
                )
                if window.holds and not held:
                    self._window_found(slot, now)
                if refusal:
                    return
            if throttled and self._concurrency_throttle(slot, now):
                # a cap on connections, not on the rate (and its Retry-After pauses the host)
                self._record_concurrency(host, slot, True, sent, now, costly=True)
                return
            if not throttled and self._record_concurrency(host, slot, overloaded, sent, now):
                return
            before = slot.adaptive.rate
            rate = (
                slot.adaptive.on_throttle(now, started, bare)
                if throttled
                else slot.adaptive.on_success(now, started)
            )
            self._apply_rate(slot, rate, now)
        if throttled and rate != before:
            log.info("host %s throttled: its rate is now %.1f/s", host, rate or 0.0)

    def _window_found(self, slot: _HostSlot, now: float) -> None:
        """A bare window now holds the host: the cuts its first refusals brought (a rate, an
        in-flight limit) read a window as something else; the window rule paces it now."""
        slot.adaptive = AdaptiveRate(ceiling=self._limits.per_host_qps or self._limits.qps)
        self._apply_rate(slot, None, now)
        if slot.concurrency is not None and self._concurrency_ceiling is not None:
            slot.concurrency = AdaptiveConcurrency(
                self._concurrency_ceiling, self._limits.per_host_connections
            )

    @staticmethod
    def _concurrency_throttle(slot: _HostSlot, now: float) -> bool:
        """Is this throttle answer (a ``429``) a connection cap's refusal, others being in
        flight at a concurrency their answers bear out (``AdaptiveConcurrency.explains``)?"""
        learned = slot.concurrency
        return learned is not None and learned.explains(now, slot.in_flight)

    def _record_concurrency(
        self,
        host: str,
        slot: _HostSlot,
        overloaded: bool,
        started: float,
        now: float,
        costly: bool = False,
    ) -> bool:
        """Feed the host's adaptive concurrency; True when the answer was a refusal for being
        too many at once (others in flight), which says nothing about the rate. ``costly``:
        the refusal pauses the host."""
        learned = slot.concurrency
        if learned is None:
            return False
        refused = overloaded and slot.in_flight > 0
        if refused:
            learned.on_overload(now, started, slot.in_flight, costly)
        else:
            learned.on_success(now, started, slot.in_flight)
        if learned.announce(started):
            if learned.limit is None:
                log.info("host %s: in-flight limit lifted", host)
            else:
                log.info("host %s: at most %d requests in flight", host, learned.cap)
        return refused

    def _apply_rate(self, slot: _HostSlot, rate: float | None, now: float) -> None:
        """Point the host's bucket at the adaptive rate (or back at ``--per-host-qps``).

        Without ``--per-host-qps`` the bucket may bank the burst the server was seen to take
        (``AdaptiveRate.burst``); with it, its burst is the user's ``--burst``.
        """
        target = rate if rate is not None else self._limits.per_host_qps
        capacity = self._limits.burst
        if self._limits.per_host_qps is None and slot.adaptive is not None:
            capacity = max(capacity, slot.adaptive.burst)
        if target is None:
            slot.bucket = None
        elif slot.bucket is None:
            slot.bucket = TokenBucket(target, capacity, now)
        else:
            if slot.bucket.rate != target:
                slot.bucket.set_rate(target, now)
            slot.bucket.capacity = capacity

    def _evict_idle(self, now: float) -> None:
        self._next_sweep = now + IDLE_EVICT_SECONDS
        idle = [
            host
            for host, slot in self._hosts.items()
            if slot.in_flight == 0
            and slot.paused_until <= now
            and now - slot.last_used >= IDLE_EVICT_SECONDS
            and (slot.bucket is None or slot.bucket.is_full(now))
            and (slot.adaptive is None or slot.adaptive.at_rest)
            and (slot.concurrency is None or slot.concurrency.at_rest)
            and (slot.quota is None or slot.quota.at_rest(now))
            and (slot.window is None or slot.window.at_rest(now))
        ]
        for host in idle:
            del self._hosts[host]

    def host_count(self) -> int:
        with self._lock:
            return len(self._hosts)

    def snapshot(self) -> LimiterSnapshot:
        with self._lock:
            now = self._clock()
            paused = tuple(
                (host, slot.paused_until - now)
                for host, slot in self._hosts.items()
                if slot.paused_until > now
            )
            throttled = tuple(
                (host, slot.adaptive.rate)
                for host, slot in self._hosts.items()
                if slot.adaptive is not None and slot.adaptive.rate is not None
            )
            concurrency = tuple(
                (host, slot.concurrency.cap or 0)
                for host, slot in self._hosts.items()
                if slot.concurrency is not None and slot.concurrency.learned
            )
            return LimiterSnapshot(
                paused=paused,
                throttled=throttled,
                global_qps=self._limits.qps,
                hosts_tracked=len(self._hosts),
                concurrency=concurrency,
            )
