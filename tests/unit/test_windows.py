"""The bare-429 window rules stepped by hand: BetweenRefusals (a rate) and BareWindow (a count)."""

from __future__ import annotations

import math

import pytest

from poolfetch.core.config import RateLimit
from poolfetch.core.limiter import HOST_BUSY, HOST_PAUSED, LocalLimiter
from poolfetch.core.ratelimit_headers import X_RATELIMIT, Quota
from poolfetch.core.windows import (
    CLOSED,
    MIN_SPAN_S,
    PAUSE_SHARE,
    PROBE_S,
    PROBING,
    BareWindow,
    BetweenRefusals,
)


def test_the_first_refusal_only_sets_the_anchor():
    between = BetweenRefusals()
    for _ in range(50):
        between.success()
    estimate = between.refused(1.0)
    assert estimate.rate is None and not estimate.closed


def test_successes_between_two_refusals_over_the_time_between_them():
    between = BetweenRefusals()
    between.refused(0.0)
    for _ in range(50):
        between.success()
    assert between.refused(2.0).rate == pytest.approx(25.0)


def test_the_last_pause_is_left_out_of_the_span():
    between = BetweenRefusals()
    between.refused(0.0)
    between.paused(0.0, 1.2)  # the window opened somewhere in this pause
    for _ in range(50):
        between.success()
    assert between.refused(2.2).rate == pytest.approx(50 / (2.2 - 1.2 * PAUSE_SHARE))


def test_a_pause_before_the_anchor_is_not_left_out():
    between = BetweenRefusals()
    between.paused(0.0, 0.5)
    between.refused(1.0)
    for _ in range(20):
        between.success()
    assert between.refused(2.0).rate == pytest.approx(20.0)


def test_nothing_accepted_since_the_last_refusal_means_closed_and_keeps_the_anchor():
    between = BetweenRefusals()
    between.refused(0.0)
    assert between.refused(0.6).closed  # resumed before the window opened
    for _ in range(30):
        between.success()
    assert between.refused(1.5).rate == pytest.approx(20.0)  # 30 over 1.5 s from the anchor


def test_a_tiny_span_is_measured_over_the_minimum():
    between = BetweenRefusals()
    between.refused(0.0)
    for _ in range(5):
        between.success()
    assert between.refused(0.01).rate == pytest.approx(5 / MIN_SPAN_S)


# --- BareWindow: the window as a count and a period ---------------------------------------------


def _first_window(taken: int = 10, at: float = 0.0) -> BareWindow:
    """A window that took ``taken`` requests sent 10 ms apart from ``at``, then refused one."""
    window = BareWindow()
    now = at
    for _ in range(taken):
        assert window.wait(now, 0) is None
        window.started(now)
        window.accepted(now)
        now += 0.01
    window.started(now)
    window.refused(now + 0.005, now)
    return window


def _opened(window: BareWindow, at: float) -> None:
    assert window.wait(at, 0) is None
    window.started(at)
    window.accepted(at)


def test_the_first_refusal_measures_the_quota_and_the_window_is_probed_alone():
    window = _first_window(10)
    assert window.quota == 10 and window.closed and not window.holds
    assert window.wait(0.11, 3) == (math.inf, PROBING)  # the rest of the burst is still out
    assert window.wait(0.11, 0) == pytest.approx((PROBE_S - 0.005, CLOSED))
    window.accepted(0.095)  # answered late, sent before the refusal: the same window's
    assert window.quota == 11


def test_a_first_probe_accepted_at_once_says_there_is_no_window():
    window = _first_window(10)
    _opened(window, 0.105 + PROBE_S)
    assert window.off and not window.holds
    assert window.wait(1.2, 15) is None
    assert window.answered(True, False, 1.3, 1.3) is False  # the adaptive rate's to read


def test_the_opening_bounds_the_period_and_each_window_gets_its_quota_at_once():
    window = _first_window(10)  # a 2 s window that took 10
    window.started(1.105)
    assert window.answered(True, False, 1.105, 1.11) is True  # the probe refused: a window
    assert window.holds
    _opened(window, 1.11 + PROBE_S)  # the next probe, a second later, opened the next window
    assert window.period == pytest.approx(2.11)
    for _ in range(9):  # the probe was one: nine more at once
        assert window.wait(2.12, 5) is None
        window.started(2.12)
    assert window.wait(2.12, 10) == pytest.approx((2.10, CLOSED))  # spent until the opening
    opening = 1.11 + PROBE_S + window.period
    assert window.wait(opening, 1) == (math.inf, PROBING)  # one probe alone at the opening
    _opened(window, opening)
    assert window.wait(opening, 1) is None and window.quota == 10  # the next window, at once


def test_a_refusal_inside_a_window_measures_it_again():
    window = _first_window(10)
    window.started(1.105)
    window.refused(1.11, 1.105)
    _opened(window, 1.11 + PROBE_S)
    for _ in range(5):
        window.started(2.12)
        window.accepted(2.12)
    window.refused(2.13, 2.12)  # the sixth refused: this window took six
    assert window.quota == 6 and window.closed
    assert window.wait(2.13, 0) == pytest.approx((PROBE_S, CLOSED))


def test_a_clean_window_grows_a_lowered_quota_back_toward_the_best():
    window = _first_window(10)
    window.started(1.105)
    window.refused(1.11, 1.105)
    _opened(window, 1.11 + PROBE_S)
    window.refused(2.13, 2.12)  # took one only (quota 1), the next probe opens it again
    _opened(window, 2.13 + PROBE_S)
    assert window.quota == 1
    assert window.period is not None
    _opened(window, 2.13 + PROBE_S + window.period)  # the predicted opening, open at once
    assert window.quota == 2


def test_the_limiter_holds_a_bare_window_and_keeps_its_refusals_from_the_adaptive_rate(clock):
    limiter = LocalLimiter(RateLimit(), clock)
    host = "api.example:443"
    for _ in range(10):
        assert limiter.try_acquire(host).granted
        limiter.release(host)
        limiter.record_response(host, throttled=False, started=clock.now)
        clock.advance(0.01)
    assert limiter.try_acquire(host).granted
    limiter.release(host)
    limiter.record_response(host, throttled=True, started=clock.now, bare=True)
    cut = dict(limiter.snapshot().throttled)[host]  # the first refusal: the adaptive rule's
    assert limiter.try_acquire(host).blocked_by == HOST_PAUSED  # closed: the next probe later
    clock.advance(PROBE_S)
    assert limiter.try_acquire(host).granted  # the probe
    assert limiter.try_acquire(host).blocked_by == HOST_BUSY  # alone
    limiter.release(host)
    limiter.record_response(host, throttled=True, started=clock.now, bare=True)
    assert dict(limiter.snapshot().throttled)[host] == cut  # no second cut
    limiter.pause_host(host, 30.0)  # a backoff grown meanwhile does not outlast the probe
    assert dict(limiter.snapshot().paused)[host] == pytest.approx(PROBE_S)


def test_a_host_that_announces_its_quota_is_left_to_the_quota_rule(clock):
    limiter = LocalLimiter(RateLimit(rate_headers=True), clock)
    host = "api.example:443"

    def answer(throttled: bool, remaining: float, reset: float) -> None:
        assert limiter.try_acquire(host).granted
        limiter.release(host)
        limiter.record_response(host, throttled=throttled, started=clock.now, bare=True)
        limiter.record_quota(host, Quota(X_RATELIMIT, remaining, reset), sent=clock.now)

    answer(False, 5, 10.0)
    clock.advance(2.0)
    answer(True, 0, 8.0)  # a bare 429 that says when: the announced reset's pause
    clock.advance(8.0)
    answer(True, 0, 10.0)  # refused again at the reset: still the announcement's pause
    assert dict(limiter.snapshot().paused)[host] == pytest.approx(10.0)


def test_a_refusal_before_anything_was_accepted_is_no_window():
    window = BareWindow()
    window.started(0.0)
    window.refused(0.01, 0.0)
    assert window.off and window.wait(0.02, 0) is None


def test_a_success_that_overtook_the_first_refusal_counts_in_the_quota():
    window = _first_window(10)  # the refused request was sent at 0.10
    window.accepted(0.101)  # sent after it, counted before it by the server
    assert window.quota == 11
