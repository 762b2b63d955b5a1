"""TokenBucket and LocalLimiter: request-start limits on an injected clock."""

from __future__ import annotations

import math
import os
import sys
import threading
import time
from collections import deque

import pytest

from poolfetch.core.config import RateLimit
from poolfetch.core.limiter import IDLE_EVICT_SECONDS, LocalLimiter
from poolfetch.core.limiter_api import GLOBAL, HOST_BUSY, HOST_PAUSED, HOST_RATE
from poolfetch.core.token_bucket import TokenBucket


def _grant_times(limiter: LocalLimiter, clock, host: str, seconds: float, step: float):
    """Ask for ``host`` every ``step`` seconds for ``seconds``; return the grant times."""
    granted = []
    end = clock.now + seconds
    while clock.now < end:
        if limiter.try_acquire(host).granted:
            granted.append(clock.now)
            limiter.release(host)
        clock.advance(step)
    return granted


def _max_in_window(times: list[float], window: float) -> int:
    best = 0
    recent: deque[float] = deque()
    for t in times:
        recent.append(t)
        while recent[0] <= t - window:
            recent.popleft()
        best = max(best, len(recent))
    return best


# --- TokenBucket -------------------------------------------------------------------------------


def test_bucket_starts_with_burst_tokens_only():
    bucket = TokenBucket(rate=10.0, capacity=3, now=0.0)
    for _ in range(3):
        assert bucket.wait_time(0.0) == 0.0
        bucket.take(0.0)
    assert bucket.wait_time(0.0) == pytest.approx(0.1)


def test_bucket_wait_time_shrinks_as_time_passes():
    bucket = TokenBucket(rate=2.0, capacity=1, now=0.0)
    bucket.take(0.0)
    assert bucket.wait_time(0.0) == pytest.approx(0.5)
    assert bucket.wait_time(0.2) == pytest.approx(0.3)
    assert bucket.wait_time(0.5) == 0.0


def test_bucket_never_holds_more_than_capacity():
    bucket = TokenBucket(rate=100.0, capacity=2, now=0.0)
    bucket.wait_time(1000.0)  # a long idle time refills to capacity, not beyond
    bucket.take(1000.0)
    bucket.take(1000.0)
    assert bucket.wait_time(1000.0) == pytest.approx(0.01)
    assert not bucket.is_full(1000.0)
    assert bucket.is_full(1001.0)


def test_no_startup_burst_and_exact_rate_over_ten_seconds(clock):
    limiter = LocalLimiter(RateLimit(qps=30, burst=1), clock=clock)
    times = _grant_times(limiter, clock, "a:80", seconds=10.0, step=0.001)
    assert _max_in_window(times, 1.0) <= 31
    assert 295 <= len(times) <= 301


def test_burst_allows_that_many_at_once_then_the_rate(clock):
    limiter = LocalLimiter(RateLimit(qps=10, burst=5), clock=clock)
    granted_now = sum(limiter.try_acquire("a:80").granted for _ in range(20))
    assert granted_now == 5
    clock.advance(1.0)
    assert sum(limiter.try_acquire("a:80").granted for _ in range(20)) == 5  # capped at burst


# --- LocalLimiter: wait values and reasons -------------------------------------------------------


def test_global_limit_reports_wait_and_reason(clock):
    limiter = LocalLimiter(RateLimit(qps=4), clock=clock)
    assert limiter.try_acquire("a:80").granted
    refused = limiter.try_acquire("b:80")
    assert not refused.granted
    assert refused.blocked_by == GLOBAL
    assert refused.wait == pytest.approx(0.25)
    clock.advance(0.25)
    assert limiter.try_acquire("b:80").granted


def test_per_host_bucket_is_independent_per_host(clock):
    limiter = LocalLimiter(RateLimit(per_host_qps=2), clock=clock)
    assert limiter.try_acquire("a:80").granted
    refused = limiter.try_acquire("a:80")
    assert refused.blocked_by == HOST_RATE
    assert refused.wait == pytest.approx(0.5)
    # another host has a bucket of its own
    assert limiter.try_acquire("b:80").granted
    assert limiter.try_acquire("c:443").granted


def test_global_bucket_is_shared_by_all_hosts(clock):
    limiter = LocalLimiter(RateLimit(qps=3, burst=3), clock=clock)
    hosts = ["a:80", "b:80", "c:80", "d:80", "e:80"]
    results = [limiter.try_acquire(h) for h in hosts]
    assert [r.granted for r in results] == [True, True, True, False, False]
    assert {r.blocked_by for r in results[3:]} == {GLOBAL}


def test_host_connection_cap_until_release(clock):
    # (adaptive: the cap would start at one, slow start, see test_concurrency.py)
    limiter = LocalLimiter(RateLimit(per_host_connections=2, adaptive=False), clock=clock)
    assert limiter.try_acquire("a:80").granted
    assert limiter.try_acquire("a:80").granted
    busy = limiter.try_acquire("a:80")
    assert busy.blocked_by == HOST_BUSY
    assert busy.wait == math.inf
    assert limiter.try_acquire("b:80").granted  # the cap is per host
    limiter.release("a:80")
    assert limiter.try_acquire("a:80").granted
    assert limiter.try_acquire("a:80").blocked_by == HOST_BUSY


def test_release_of_unknown_or_idle_host_is_harmless(clock):
    limiter = LocalLimiter(RateLimit(per_host_connections=1), clock=clock)
    limiter.release("never-seen:80")
    assert limiter.try_acquire("a:80").granted
    limiter.release("a:80")
    limiter.release("a:80")  # one release too many must not open a second slot
    assert limiter.try_acquire("a:80").granted
    assert limiter.try_acquire("a:80").blocked_by == HOST_BUSY


def test_pause_blocks_only_that_host(clock):
    limiter = LocalLimiter(RateLimit(), clock=clock)
    limiter.pause_host("a:80", 10.0)
    paused = limiter.try_acquire("a:80")
    assert paused.blocked_by == HOST_PAUSED
    assert paused.wait == pytest.approx(10.0)
    assert limiter.try_acquire("b:80").granted
    clock.advance(9.9)
    assert limiter.try_acquire("a:80").wait == pytest.approx(0.1)
    clock.advance(0.1)
    assert limiter.try_acquire("a:80").granted


def test_pause_never_shortens_a_longer_pause(clock):
    limiter = LocalLimiter(RateLimit(), clock=clock)
    limiter.pause_host("a:80", 30.0)
    limiter.pause_host("a:80", 2.0)
    clock.advance(5.0)
    assert limiter.try_acquire("a:80").blocked_by == HOST_PAUSED
    # but a longer one extends it
    limiter.pause_host("a:80", 60.0)
    clock.advance(30.0)
    assert limiter.try_acquire("a:80").wait == pytest.approx(30.0)


def test_reason_order_paused_before_busy_before_rate(clock):
    limiter = LocalLimiter(RateLimit(per_host_qps=1, per_host_connections=1), clock=clock)
    assert limiter.try_acquire("a:80").granted
    assert limiter.try_acquire("a:80").blocked_by == HOST_BUSY
    limiter.release("a:80")
    assert limiter.try_acquire("a:80").blocked_by == HOST_RATE
    limiter.pause_host("a:80", 5.0)
    assert limiter.try_acquire("a:80").blocked_by == HOST_PAUSED


# --- a refusal takes nothing ------------------------------------------------------------------


def test_refused_by_global_takes_no_host_token(clock):
    limiter = LocalLimiter(RateLimit(qps=1, per_host_qps=1), clock=clock)
    assert limiter.try_acquire("a:80").granted
    clock.advance(0.5)
    for _ in range(5):
        assert limiter.try_acquire("b:80").blocked_by == GLOBAL
    clock.advance(0.5)
    # had the refusals taken b's host token, b would now be refused for its own rate
    assert limiter.try_acquire("b:80").granted


def test_refused_by_host_takes_no_global_token(clock):
    limiter = LocalLimiter(RateLimit(qps=10, per_host_qps=1), clock=clock)
    assert limiter.try_acquire("a:80").granted
    clock.advance(0.1)
    for _ in range(5):
        assert limiter.try_acquire("a:80").blocked_by == HOST_RATE
    assert limiter.try_acquire("b:80").granted


def test_refused_while_paused_or_busy_takes_no_token(clock):
    limiter = LocalLimiter(RateLimit(qps=1, per_host_connections=1), clock=clock)
    assert limiter.try_acquire("a:80").granted
    clock.advance(1.0)
    limiter.pause_host("p:80", 5.0)
    for _ in range(5):
        assert limiter.try_acquire("p:80").blocked_by == HOST_PAUSED
        assert limiter.try_acquire("a:80").blocked_by == HOST_BUSY
    assert limiter.try_acquire("b:80").granted


# --- idle host slots ----------------------------------------------------------------------------


def test_idle_hosts_are_evicted(clock):
    limiter = LocalLimiter(RateLimit(per_host_qps=5), clock=clock)
    for i in range(50):
        host = f"h{i}:80"
        assert limiter.try_acquire(host).granted
        limiter.release(host)
    assert limiter.host_count() == 50
    clock.advance(IDLE_EVICT_SECONDS + 1)
    assert limiter.try_acquire("new:80").granted
    assert limiter.host_count() == 1


def test_in_flight_and_paused_hosts_are_not_evicted(clock):
    limiter = LocalLimiter(RateLimit(per_host_qps=5), clock=clock)
    assert limiter.try_acquire("busy:80").granted  # never released
    limiter.pause_host("paused:80", 10 * IDLE_EVICT_SECONDS)
    assert limiter.try_acquire("idle:80").granted
    limiter.release("idle:80")
    clock.advance(IDLE_EVICT_SECONDS + 1)
    assert limiter.try_acquire("new:80").granted
    assert limiter.host_count() == 3  # busy, paused, new
    # the pause is still in force after the sweep
    assert limiter.try_acquire("paused:80").blocked_by == HOST_PAUSED
    limiter.release("busy:80")
    limiter.release("new:80")
    clock.advance(IDLE_EVICT_SECONDS + 1)
    limiter.try_acquire("other:80")
    assert limiter.host_count() == 2  # paused, other


def test_host_still_capped_after_a_sweep_while_in_flight(clock):
    limiter = LocalLimiter(RateLimit(per_host_connections=1), clock=clock)
    assert limiter.try_acquire("a:80").granted
    clock.advance(IDLE_EVICT_SECONDS * 3)
    limiter.try_acquire("b:80")
    assert limiter.try_acquire("a:80").blocked_by == HOST_BUSY


# --- thread safety ------------------------------------------------------------------------------


@pytest.fixture
def fast_thread_switches():
    """Switch threads as often as possible so a missing lock shows up as a race."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(before)


@pytest.mark.usefixtures("fast_thread_switches")
def test_connection_cap_holds_under_threads():
    limiter = LocalLimiter(RateLimit(per_host_connections=3, adaptive=False), clock=time.monotonic)
    lock = threading.Lock()
    in_flight = 0
    peak = 0
    grants = 0
    start = threading.Barrier(8)

    def hammer() -> None:
        nonlocal in_flight, peak, grants
        start.wait(timeout=5)
        for _ in range(2000):
            if limiter.try_acquire("h:80").granted:
                with lock:
                    in_flight += 1
                    grants += 1
                    peak = max(peak, in_flight)
                os.sched_yield()  # let other threads run while this slot is held
                with lock:
                    in_flight -= 1
                limiter.release("h:80")

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)
    assert not any(thread.is_alive() for thread in threads)
    assert grants > 0
    assert peak <= 3
    # every grant was released: exactly three slots are free again
    assert [limiter.try_acquire("h:80").granted for _ in range(4)] == [True, True, True, False]
