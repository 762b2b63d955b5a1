"""AdaptiveRate (AIMD per host) alone and as LocalLimiter applies it."""

from __future__ import annotations

import pytest

from poolfetch.core.adaptive import COOLDOWN_S, DECREASE, MIN_RATE, AdaptiveRate
from poolfetch.core.config import RateLimit
from poolfetch.core.limiter import IDLE_EVICT_SECONDS, LocalLimiter


def _started_at(rate: AdaptiveRate, per_second: float, seconds: float, t0: float = 0.0) -> float:
    """Note starts at ``per_second`` for ``seconds``; return the time of the last start."""
    n = int(per_second * seconds)
    for i in range(n):
        rate.note_start(t0 + i / per_second)
    return t0 + (n - 1) / per_second


def test_host_starts_unlimited():
    assert AdaptiveRate(ceiling=None).rate is None
    assert AdaptiveRate(ceiling=None).at_rest


def test_first_throttle_halves_the_measured_send_rate():
    rate = AdaptiveRate(ceiling=None)
    last = _started_at(rate, per_second=20, seconds=2)
    assert rate.on_throttle(last) == pytest.approx(20 * DECREASE, rel=0.02)
    assert rate.rate == pytest.approx(10, rel=0.02)
    assert rate.throttles == 1
    assert not rate.at_rest


def test_first_throttle_never_exceeds_the_ceiling():
    rate = AdaptiveRate(ceiling=4.0)
    last = _started_at(rate, per_second=50, seconds=1)
    assert rate.on_throttle(last) == pytest.approx(4.0 * DECREASE)


def test_throttles_within_cooldown_cut_once():
    rate = AdaptiveRate(ceiling=None)
    last = _started_at(rate, per_second=40, seconds=1)
    first = rate.on_throttle(last)
    for k in range(1, 10):
        assert rate.on_throttle(last + k * COOLDOWN_S / 10) == first
    assert rate.throttles == 1
    second = rate.on_throttle(last + COOLDOWN_S + 0.001)
    assert second == pytest.approx(first * DECREASE)
    assert rate.throttles == 2


def test_never_below_min_rate():
    rate = AdaptiveRate(ceiling=None)
    now = _started_at(rate, per_second=10, seconds=1)
    for _ in range(30):
        now += COOLDOWN_S + 0.01
        rate.on_throttle(now)
    assert rate.rate == MIN_RATE


def test_successes_raise_additively_over_time():
    rate = AdaptiveRate(ceiling=100.0)
    last = _started_at(rate, per_second=20, seconds=1)
    cut = rate.on_throttle(last)
    assert cut is not None
    assert rate.on_success(last + 2.0) == pytest.approx(cut + 2.0)
    # a burst of successes in the same instant raises nothing more
    assert rate.on_success(last + 2.01) == pytest.approx(cut + 2.0)
    assert rate.on_success(last + 5.0) == pytest.approx(cut + 5.0)


def test_reaching_the_ceiling_lifts_the_cap():
    rate = AdaptiveRate(ceiling=10.0)
    last = _started_at(rate, per_second=20, seconds=1)
    assert rate.on_throttle(last) == pytest.approx(5.0)
    assert rate.on_success(last + 3.0) == pytest.approx(8.0)
    assert rate.on_success(last + 6.0) is None
    assert rate.rate is None
    assert rate.at_rest
    assert rate.on_success(last + 7.0) is None


def test_success_without_a_throttle_changes_nothing():
    rate = AdaptiveRate(ceiling=None)
    assert rate.on_success(100.0) is None
    assert rate.at_rest


def test_without_ceiling_long_clean_running_lifts_the_cap():
    rate = AdaptiveRate(ceiling=None)
    last = _started_at(rate, per_second=10, seconds=1)
    rate.on_throttle(last)
    now = last
    for _ in range(3600):  # an hour of clean answers, one a second
        now += 1.0
        rate.on_success(now)
    assert rate.rate is None


# --- applied by LocalLimiter -------------------------------------------------------------------


def _grants(limiter: LocalLimiter, clock, host: str, seconds: float, step: float) -> int:
    granted = 0
    end = clock.now + seconds - 1e-9
    while clock.now < end:
        if limiter.try_acquire(host).granted:
            granted += 1
            limiter.release(host)
        clock.advance(step)
    return granted


def test_limiter_applies_the_cut_rate_to_the_host(clock):
    limiter = LocalLimiter(RateLimit(adaptive=True), clock=clock)
    assert _grants(limiter, clock, "h:80", seconds=2.0, step=0.05) == 40  # 20/s, unlimited
    limiter.record_response("h:80", throttled=True)
    after = [_grants(limiter, clock, "h:80", seconds=1.0, step=0.01) for _ in range(3)]
    assert 9 <= after[0] <= 12  # about the cut rate, 10/s (+ the burst of one)
    assert all(9 <= n <= 11 for n in after[1:])
    # other hosts are not affected
    assert _grants(limiter, clock, "other:80", seconds=1.0, step=0.01) == 100
    snapshot = limiter.snapshot()
    assert [host for host, _ in snapshot.throttled] == ["h:80"]


def test_limiter_without_adaptive_ignores_throttles(clock):
    limiter = LocalLimiter(RateLimit(adaptive=False), clock=clock)
    assert _grants(limiter, clock, "h:80", seconds=2.0, step=0.05) == 40
    limiter.record_response("h:80", throttled=True)
    assert _grants(limiter, clock, "h:80", seconds=1.0, step=0.01) == 100
    assert limiter.snapshot().throttled == ()


def test_limiter_recovers_to_configured_per_host_rate(clock):
    limiter = LocalLimiter(RateLimit(per_host_qps=20, adaptive=True), clock=clock)
    assert _grants(limiter, clock, "h:80", seconds=1.0, step=0.01) in (20, 21)
    limiter.record_response("h:80", throttled=True)
    assert _grants(limiter, clock, "h:80", seconds=1.0, step=0.01) <= 11
    for _ in range(30):  # 30 s of clean answers: back to the ceiling, cap lifted
        clock.advance(1.0)
        limiter.record_response("h:80", throttled=False)
    assert limiter.snapshot().throttled == ()
    assert 19 <= _grants(limiter, clock, "h:80", seconds=1.0, step=0.01) <= 21


def test_throttled_host_is_not_evicted_while_rate_is_cut(clock):
    limiter = LocalLimiter(RateLimit(per_host_qps=20, adaptive=True), clock=clock)
    _grants(limiter, clock, "h:80", seconds=1.0, step=0.01)
    limiter.record_response("h:80", throttled=True)
    clock.advance(IDLE_EVICT_SECONDS + 1)
    limiter.try_acquire("other:80")
    # the cut survives the sweep: the host is still throttled
    assert [host for host, _ in limiter.snapshot().throttled] == ["h:80"]
