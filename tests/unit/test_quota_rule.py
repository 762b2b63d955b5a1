"""HostQuota and its hook in LocalLimiter, stepped on a fake clock: probe, pace, pause."""

from __future__ import annotations

import itertools
import math

import pytest

from poolfetch.core.config import RateLimit, RetryPolicy
from poolfetch.core.limiter import IDLE_EVICT_SECONDS, LocalLimiter
from poolfetch.core.limiter_api import HOST_BUSY, HOST_PAUSED, HOST_QUOTA
from poolfetch.core.models import AttemptOutcome
from poolfetch.core.quota import PACE, PAUSE, PROBE, HostQuota
from poolfetch.core.ratelimit_headers import IETF, X_RATELIMIT, Quota
from poolfetch.core.retrying import RetryPlanner, announced_quota

HOST = "api.example:443"


def announce(remaining: float, reset: float | None = None, **more: object) -> Quota:
    return Quota(X_RATELIMIT, remaining, reset, **more)  # type: ignore[arg-type]


def answered(rule: HostQuota, now: float = 0.0) -> HostQuota:
    """The rule after the first (probe) request went out at ``now`` and came back silent."""
    assert rule.wait(now, 0) is None
    rule.started(now)
    rule.observe(None, now, 0, sent=now)
    return rule


def run_paced(rule: HostQuota, start: float, until: float) -> list[float]:
    """Start requests as soon as the rule allows (each answered at once, announcing nothing
    new) from ``start`` to ``until``; return their start times."""
    now, starts = start, []
    while now < until:
        held = rule.wait(now, 0)
        if held is None:
            rule.started(now)
            starts.append(round(now, 6))
            continue
        seconds, why = held
        assert why in (PACE, PAUSE) and seconds > 0
        now += seconds
    return starts


# --- probing ------------------------------------------------------------------------------------


def test_first_request_goes_alone_until_the_host_answers() -> None:
    rule = HostQuota()
    assert rule.wait(0.0, 0) is None
    rule.started(0.0)
    assert rule.wait(0.0, 1) == (math.inf, PROBE)
    rule.observe(None, 0.05, 0, sent=0.05)  # the answer announced nothing
    assert rule.wait(0.05, 0) is None
    rule.started(0.05)
    assert rule.wait(0.05, 15) is None  # an ordinary host: no limit from here on


def test_a_new_window_is_probed_after_the_reset() -> None:
    rule = answered(HostQuota())
    rule.observe(announce(0, 2.0), 0.0, 0, sent=0.0)
    assert rule.wait(1.0, 0) == (1.0, PAUSE)
    assert rule.wait(2.0, 1) == (math.inf, PROBE)  # a request from before is still out
    assert rule.wait(2.0, 0) is None
    rule.started(2.0)
    assert rule.wait(2.0, 1) == (math.inf, PROBE)
    rule.observe(announce(9, 10.0), 2.01, 0, sent=2.01)
    assert rule.wait(2.01, 0) is not None  # paced from here: 9 over 10 s


def test_silence_after_the_reset_frees_the_host() -> None:
    rule = answered(HostQuota())
    rule.observe(announce(0, 1.0), 0.0, 0, sent=0.0)
    rule.observe(None, 0.5, 0, sent=0.5)  # silent while the announcement holds: it still holds
    assert rule.wait(0.5, 0) == (0.5, PAUSE)
    rule.started(1.0)
    rule.observe(None, 1.2, 0, sent=1.2)
    assert rule.wait(1.2, 10) is None


# --- pacing -------------------------------------------------------------------------------------


def test_what_remains_is_spread_until_the_reset() -> None:
    rule = answered(HostQuota())  # the probe started at 0
    rule.observe(announce(9, 1.0), 0.0, 0, sent=0.0)
    starts = run_paced(rule, 0.0, 0.99)
    # evenly, and the last two paces before the reset (its rounding) left unspent
    assert starts == pytest.approx([k / 11 for k in range(1, 10)], abs=1e-6)
    assert rule.wait(0.95, 0) == pytest.approx((0.05, PAUSE))


def test_pacing_never_spends_faster_than_the_policy() -> None:
    """The draft's warning: r/t = 1000/s, the policy q/w = 10/s."""
    rule = answered(HostQuota())
    overstated = Quota(IETF, 10000, 10.0, 10000, 1000.0, "somepolicy")
    rule.observe(overstated, 0.0, 0, sent=0.0)
    starts = run_paced(rule, 0.0, 1.05)
    assert len(starts) == 10
    assert min(b - a for a, b in itertools.pairwise(starts)) == pytest.approx(0.1)


def test_what_remains_goes_at_once_when_it_covers_the_work_left() -> None:
    """The last window: spreading it until the reset would only end the run later."""
    rule = answered(HostQuota())
    rule.observe(announce(9, 1.0), 0.0, 0, sent=0.0)
    assert rule.wait(0.0, 0, backlog=10) == pytest.approx((1 / 11, PACE))  # the next window too
    assert rule.wait(0.0, 0, backlog=None) == pytest.approx((1 / 11, PACE))  # unknown: paced
    for sent in range(9):
        assert rule.wait(0.0, sent, backlog=9 - sent) is None
        rule.started(0.0)
    assert rule.wait(0.0, 9, backlog=1) == pytest.approx((1.0, PAUSE))  # and no more than that


def test_the_policy_rate_does_not_hold_back_the_last_of_the_work() -> None:
    rule = answered(HostQuota())
    rule.observe(Quota(IETF, 10, 10.0, 100, 10.0, "default"), 0.0, 0, sent=0.0)
    assert rule.wait(0.0, 0, backlog=11) == pytest.approx((10 / 12, PACE))
    assert rule.wait(0.0, 0, backlog=10) is None


def test_requests_in_flight_count_against_what_remains() -> None:
    rule = answered(HostQuota())
    assert rule.observe(announce(3, 10.0), 0.0, in_flight=3, sent=0.0) == pytest.approx(10.0)
    assert rule.wait(0.0, 3) == (10.0, PAUSE)
    rule2 = answered(HostQuota())
    rule2.observe(announce(5, 10.0), 0.0, in_flight=3, sent=0.0)
    assert rule2.available == 2


def test_every_start_takes_one() -> None:
    rule = answered(HostQuota())
    rule.observe(announce(2, 1.0), 0.0, 0, sent=0.0)
    starts = run_paced(rule, 0.0, 0.999)
    assert len(starts) == 2
    assert rule.available == 0


def test_a_late_answer_from_the_same_window_cannot_raise_the_count() -> None:
    rule = answered(HostQuota())
    rule.observe(announce(5, 10.0), 0.0, 0, sent=0.0)
    rule.observe(announce(8, 9.6), 0.4, 0, sent=-0.1)  # sent earlier, answered later
    assert rule.available == 5
    assert rule.deadline == pytest.approx(10.0)


def test_news_replaces_the_count_an_old_window_is_ignored() -> None:
    rule = answered(HostQuota())
    rule.observe(announce(5, 10.0), 0.0, 0, sent=0.0)
    rule.started(0.1)
    rule.started(0.2)
    assert rule.available == 3
    rule.observe(announce(4, 9.5), 0.5, 1, sent=0.1)  # the server counted one; one is out
    assert rule.available == 3
    rule.observe(announce(9, 0.5), 0.6, 0, sent=-5.0)  # a window that ended long ago
    assert rule.available == 3 and rule.deadline == pytest.approx(10.0)


def test_fractional_resets_tell_windows_apart_more_finely() -> None:
    rule = answered(HostQuota())
    rule.observe(announce(9, 1.0, exact=True), 0.0, 0, sent=0.0)
    rule.observe(announce(0, 0.5, exact=True), 0.1, 0, sent=-0.5)  # the window before: ignored
    assert rule.available == 9
    rule.observe(announce(0, 0.5), 0.1, 0, sent=-0.5)  # whole seconds: it may be this one
    assert rule.available == 0


def test_a_later_reset_starts_a_new_window() -> None:
    rule = answered(HostQuota())
    rule.observe(announce(1, 1.0), 0.0, 0, sent=0.0)
    rule.observe(announce(9, 2.0), 0.9, 0, sent=0.9)  # resets at 2.9: the next window
    assert rule.available == 9
    assert rule.deadline == pytest.approx(2.9)


def test_a_request_that_overtook_another_is_no_new_window() -> None:
    """Sent second, counted first: a higher count with the same reset says nothing new, and
    our own count (the probe's, less every start since) stays exact."""
    rule = answered(HostQuota())
    rule.observe(announce(99, 10.0), 0.0, 0, sent=0.0)
    for k in range(1, 17):
        rule.started(0.001 * k)
    assert rule.available == 83
    rule.observe(announce(90, 10.0), 0.01, 15, sent=0.001)  # the first sent, counted ninth
    rule.observe(announce(98, 10.0), 0.01, 14, sent=0.002)  # the second sent, counted first
    rule.observe(announce(84, 10.0), 0.02, 0, sent=0.003)  # the third, counted last
    assert rule.available == 83


def test_an_earlier_reset_is_believed() -> None:
    rule = answered(HostQuota())
    rule.observe(announce(50, 30.0), 0.0, 0, sent=0.0)
    rule.observe(announce(40, 5.0), 1.0, 0, sent=1.0)
    assert rule.deadline == pytest.approx(6.0) and rule.available == 40


def test_without_a_reset_a_spent_quota_goes_one_at_a_time() -> None:
    """Shopify's leaky bucket: used/size, no reset."""
    rule = answered(HostQuota())
    rule.observe(announce(2, None, limit=40), 0.0, 0, sent=0.0)
    for _ in range(2):
        assert rule.wait(0.0, 0) is None
        rule.started(0.0)
    assert rule.wait(0.0, 2) == (math.inf, PROBE)
    assert rule.wait(0.0, 0) is None
    rule.observe(announce(5, None, limit=40), 1.0, 0, sent=1.0)  # the bucket drained: no min here
    assert rule.available == 5


def test_at_rest_once_the_reset_passed() -> None:
    rule = answered(HostQuota())
    assert rule.at_rest(0.0)
    rule.observe(announce(3, 5.0), 0.0, 0, sent=0.0)
    assert not rule.at_rest(4.9)
    assert rule.at_rest(5.0)


# --- in the limiter -----------------------------------------------------------------------------


def test_limiter_probes_then_paces_then_pauses(clock) -> None:
    limiter = LocalLimiter(RateLimit(adaptive=False, rate_headers=True), clock)
    assert limiter.try_acquire(HOST).granted
    assert limiter.try_acquire(HOST).blocked_by == HOST_BUSY
    limiter.release(HOST)
    limiter.record_quota(HOST, announce(2, 1.0), sent=clock.now)
    admission = limiter.try_acquire(HOST)
    assert admission.blocked_by == HOST_QUOTA and admission.wait == pytest.approx(1 / 4)
    clock.advance(admission.wait)
    assert limiter.try_acquire(HOST).granted
    assert limiter.try_acquire(HOST).blocked_by == HOST_QUOTA
    limiter.release(HOST)
    limiter.record_quota(HOST, announce(0, 0.6), sent=clock.now)  # spent: paused as for Retry-After
    admission = limiter.try_acquire(HOST)
    assert admission.blocked_by == HOST_PAUSED and admission.wait == pytest.approx(0.6)
    assert [h for h, _ in limiter.snapshot().paused] == [HOST]
    clock.advance(0.6)
    assert limiter.try_acquire(HOST).granted  # the probe of the next window


def test_limiter_asks_the_backlog_of_the_host_it_admits(clock) -> None:
    work = {HOST: 3}
    limiter = LocalLimiter(
        RateLimit(adaptive=False, rate_headers=True), clock, backlog=lambda host: work[host]
    )
    assert limiter.try_acquire(HOST).granted
    limiter.release(HOST)
    limiter.record_quota(HOST, announce(2, 10.0), sent=clock.now)
    assert limiter.try_acquire(HOST).blocked_by == HOST_QUOTA  # 3 to go, 2 remain: paced
    work[HOST] = 2
    assert limiter.try_acquire(HOST).granted
    work[HOST] = 1
    assert limiter.try_acquire(HOST).granted
    assert limiter.try_acquire(HOST).blocked_by == HOST_PAUSED  # spent: until the reset


def test_limiter_other_hosts_are_not_held(clock) -> None:
    limiter = LocalLimiter(RateLimit(adaptive=False, rate_headers=True), clock)
    assert limiter.try_acquire(HOST).granted
    limiter.release(HOST)
    limiter.record_quota(HOST, announce(0, 30.0), sent=clock.now)
    assert limiter.try_acquire(HOST).blocked_by == HOST_PAUSED
    assert limiter.try_acquire("other.example:443").granted


def test_limiter_without_rate_headers_ignores_quotas(clock) -> None:
    limiter = LocalLimiter(RateLimit(adaptive=False, rate_headers=False), clock)
    for _ in range(5):
        assert limiter.try_acquire(HOST).granted  # no probe either
    limiter.record_quota(HOST, announce(0, 30.0), sent=clock.now)
    assert limiter.try_acquire(HOST).granted


def test_limiter_keeps_a_host_whose_quota_holds(clock) -> None:
    limiter = LocalLimiter(RateLimit(adaptive=False, rate_headers=True), clock)
    assert limiter.try_acquire(HOST).granted
    limiter.release(HOST)
    limiter.record_quota(HOST, announce(1, 3 * IDLE_EVICT_SECONDS), sent=clock.now)
    clock.advance(IDLE_EVICT_SECONDS * 1.5)
    limiter.try_acquire("other.example:443")  # sweeps idle hosts
    assert limiter.host_count() == 2
    clock.advance(IDLE_EVICT_SECONDS * 2)
    limiter.try_acquire("other.example:443")
    assert limiter.host_count() == 1


# --- Retry-After and the quota ------------------------------------------------------------------


def test_retry_after_wins_over_the_reset() -> None:
    spent = announce(0, 30.0)
    throttled = AttemptOutcome(0.0, 0.0, status=429, retry_after="5", quota=spent)
    assert announced_quota(throttled) == spent.with_reset(5.0)
    ok = AttemptOutcome(0.0, 0.0, status=200, retry_after="5", quota=spent)
    assert announced_quota(ok) is spent  # Retry-After means nothing on a 200


def test_a_429_without_retry_after_waits_for_the_announced_reset() -> None:
    planner = RetryPlanner(RetryPolicy(backoff=0.5))
    outcome = AttemptOutcome(0.0, 0.0, status=429, quota=announce(0, 7.0))
    decision = planner.decide(outcome, 1, HOST)
    assert decision.retry and decision.pause_host == 7.0 and decision.wait >= 7.0
    too_long = AttemptOutcome(0.0, 0.0, status=429, quota=announce(0, 3600.0))
    refused = planner.decide(too_long, 1, "other:443")
    assert not refused.retry and "max-retry-after" in (refused.error or "")
