"""The bare-429 window rules stepped by hand: BetweenRefusals (a rate) and BareWindow (a count)."""

from __future__ import annotations

import math

import pytest
from window_probes import simulate

from poolfetch.core.config import RateLimit
from poolfetch.core.limiter import LocalLimiter
from poolfetch.core.limiter_api import HOST_BUSY, HOST_PAUSED, HOST_RATE
from poolfetch.core.ratelimit_headers import X_RATELIMIT, Quota
from poolfetch.core.window_log import MAX_ENTRIES, SuccessLog
from poolfetch.core.windows import (
    CANDIDATES_S,
    CLOSED,
    LATE_PROBE_S,
    MIN_SPAN_S,
    PAUSE_SHARE,
    PROBE_S,
    PROBING,
    REOPEN_S,
    BareWindow,
    BetweenRefusals,
    next_candidate,
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

RTT = 0.002  # each request of the hand-stepped windows is answered this long after it was sent


def _first_window(taken: int = 10, at: float = 0.0, gap: float = 0.01) -> BareWindow:
    """A window that took ``taken`` requests sent ``gap`` apart from ``at`` (each answered
    ``RTT`` later), then refused one."""
    window = BareWindow()
    now = at
    for _ in range(taken):
        assert window.wait(now, 0) is None
        window.started(now)
        window.answered(False, True, now, now + RTT)
        now += gap
    window.started(now)
    window.answered(True, False, now, now + RTT)
    return window


def _probe(window: BareWindow, at: float, accepted: bool) -> None:
    assert window.wait(at, 0) is None
    window.started(at)
    window.answered(not accepted, accepted, at, at + RTT)


def test_the_first_refusal_measures_the_quota_and_the_window_is_probed_alone():
    window = _first_window(10)
    assert window.quota == 10 and window.closed and not window.holds
    assert window.wait(0.11, 3) == (math.inf, PROBING)  # the rest of the burst is still out
    first_answer = RTT
    assert window.wait(0.11, 0) == pytest.approx((first_answer + PROBE_S - 0.11, CLOSED))
    window.answered(False, True, 0.095, 0.12)  # answered late, sent before the refusal
    assert window.quota == 11


def test_probes_go_at_the_likely_window_lengths_after_the_first_answer():
    window = _first_window(10)  # first answered at RTT, refused at 0.1 s
    sent: list[float] = []
    now = 0.2
    for _ in range(5):
        wait = window.wait(now, 0)
        assert wait is not None and wait[1] == CLOSED
        sent.append(now + wait[0])
        _probe(window, sent[-1], accepted=False)
        now = sent[-1] + RTT
    assert sent == pytest.approx([RTT + length for length in (1.0, 2.0, 5.0, 10.0, 15.0)])
    assert window.holds and window.closed


def test_a_window_first_refused_late_is_probed_at_the_next_likely_length():
    window = _first_window(10, gap=0.5)  # ten over 4.5 s, refused at 5 s
    wait = window.wait(5.1, 0)
    assert wait == pytest.approx((RTT + 10.0 - 5.1, CLOSED))
    _probe(window, RTT + 10.0, accepted=True)  # closed for 5 s: a window, not a rate
    assert not window.off and window.holds and window.period == pytest.approx(10.0 + 2 * RTT)


def test_the_probes_past_a_minute_come_each_minute():
    assert next_candidate(0.0, 0.5) == CANDIDATES_S[0]
    assert next_candidate(0.0, 10.0) == 15.0
    assert next_candidate(0.0, CANDIDATES_S[-1]) == CANDIDATES_S[-1] + LATE_PROBE_S
    assert next_candidate(100.0, 100.0 + 299.0) == 100.0 + 300.0  # 5 minutes
    assert next_candidate(0.0, 3599.5) == 3600.0  # an hour


@pytest.mark.parametrize("delay", [0.0, 0.8])  # a backoff pause can delay the first probe
def test_a_first_probe_accepted_says_there_is_no_window(delay):
    window = _first_window(10)
    _probe(window, RTT + PROBE_S + delay, accepted=True)
    assert window.off and not window.holds
    assert window.wait(1.2, 15) is None
    assert window.answered(True, False, 1.3, 1.3) is False  # the adaptive rate's to read


def test_the_accepted_probe_bounds_the_period_from_the_first_start_to_its_answer():
    window = _first_window(10)
    for length in (1.0, 2.0, 5.0):
        _probe(window, RTT + length, accepted=False)
        assert window.holds and window.closed
    _probe(window, RTT + 10.0, accepted=True)
    assert not window.closed
    assert window.period == pytest.approx(10.0 + 2 * RTT)  # first sent at 0, answered there


def _opened_window(taken: int = 10, gap: float = 0.01) -> tuple[BareWindow, float]:
    """``_first_window`` probed open at 10 s; returns it and the probe's answer time."""
    window = _first_window(taken, gap=gap)
    for length in (1.0, 2.0, 5.0):
        _probe(window, RTT + length, accepted=False)
    _probe(window, RTT + 10.0, accepted=True)
    return window, RTT + 10.0 + RTT


def _starts_allowed(window: BareWindow, now: float, in_flight: int = 0) -> int:
    """How many may start now at once (each counted in flight as it starts)."""
    started = 0
    while window.wait(now, in_flight + started) is None and started < 1000:
        window.started(now)
        started += 1
    return started


def test_a_window_taken_as_a_burst_comes_back_as_a_burst():
    window, opened = _opened_window(10, gap=0.001)  # the first window took its 10 in 10 ms
    period = window.period
    assert period is not None
    assert _starts_allowed(window, opened, in_flight=0) == 0  # its units are not back yet
    back = 0.010 + RTT + period  # the last of them answered at 10 ms
    assert _starts_allowed(window, back) == 9  # the probe took the tenth


def test_a_moving_window_gets_each_unit_back_one_period_after_its_answer():
    # a window that took its 10 over 4.5 s (0.5 s apart): a moving window gives them back
    # as spread, so they are started as spread, never 10 within one period
    window = _first_window(10, gap=0.5)
    _probe(window, RTT + 10.0, accepted=True)
    opened = RTT + 10.0 + RTT
    period = window.period
    assert period is not None
    answers = [i * 0.5 + RTT for i in range(10)]
    allowed = []
    now = opened
    while now < opened + 6.0:
        count = _starts_allowed(window, now)
        for _ in range(count):
            window.answered(False, True, now, now + RTT)
        allowed += [now] * count
        now += 0.05
    assert len(allowed) == 9  # the probe took one
    for answer, start in zip(answers[1:], allowed, strict=True):
        assert answer + period <= start < answer + period + 0.06


def test_starts_in_flight_count_against_the_quota():
    window, _ = _opened_window(10, gap=0.001)
    assert window.period is not None
    back = 0.010 + RTT + window.period
    assert _starts_allowed(window, back, in_flight=4) == 5  # 10 - the probe - 4 out


def _spent_again(quota: int = 10) -> tuple[BareWindow, float, float]:
    """A window of ``quota`` found and opened again, its quota spent at once (the probe and
    the rest); return it, when the last start went, and its period before that."""
    window, _ = _opened_window(quota, gap=0.001)
    period = window.period
    assert period is not None
    now = 0.010 + RTT + period
    for _ in range(quota - 1):
        window.started(now)
        window.answered(False, True, now, now + RTT)
    return window, now, period


def test_after_a_long_hold_the_first_start_goes_alone():
    window, now, _ = _spent_again()
    wait = window.wait(now + RTT, 0)  # all 10 spent: held until the next opening
    assert wait is not None and wait[1] == CLOSED and wait[0] >= REOPEN_S
    opening = now + RTT + wait[0]
    assert window.wait(opening, 0) is None
    window.started(opening)
    assert window.wait(opening, 1) == (math.inf, PROBING)  # alone
    window.answered(False, True, opening, opening + RTT)
    assert window.wait(opening + RTT + 0.02, 0) is None  # open: the rest may go


def test_a_refused_probe_at_the_predicted_opening_finds_the_window_again():
    window, now, period = _spent_again()
    opening = now + RTT + window.wait(now + RTT, 0)[0]  # type: ignore[index]
    _probe(window, opening, accepted=False)  # not open yet: the period was short
    assert window.closed and window.holds
    wait = window.wait(opening + RTT, 0)
    assert wait is not None and wait[1] == CLOSED
    again = opening + RTT + wait[0]
    _probe(window, again, accepted=True)
    assert not window.closed and window.period > period


def test_a_refusal_inside_an_open_window_measures_it_again():
    window, _ = _opened_window(10, gap=0.001)
    period = window.period
    assert period is not None
    opening = RTT + 10.0 + RTT  # the probe that opened this window was answered then
    now = 0.010 + RTT + period
    for _ in range(5):
        window.started(now)
        window.answered(False, True, now, now + RTT)
    window.answered(True, False, now + 0.001, now + 0.003)  # the server took 6 (the probe too)
    window.answered(True, False, now + 0.001, now + 0.004)  # in flight with it: same episode
    assert window.quota == 6 and window.closed
    wait = window.wait(now + 0.005, 0)
    assert wait == pytest.approx((opening + 1.0 - now - 0.005, CLOSED))  # the likely lengths
    window.answered(False, True, now + 0.001, now + 0.006)  # one more answered late: it took 7
    assert window.quota == 7
    for length in (1.0, 2.0):
        _probe(window, opening + length, accepted=False)
    _probe(window, opening + 5.0, accepted=True)  # shorter than measured: it changed
    assert window.period == pytest.approx(5.0 + RTT + RTT)


def test_a_lowered_quota_grows_back_on_clean_openings():
    window, _ = _opened_window(10, gap=0.001)
    period = window.period
    assert period is not None
    now = 0.010 + RTT + period
    window.answered(True, False, now, now + RTT)  # this window took the probe only
    assert window.quota == 1
    now += RTT
    quotas = []
    for _ in range(3):
        wait = window.wait(now, 0)
        assert wait is not None and wait[1] == CLOSED
        now += wait[0]
        _probe(window, now, accepted=True)  # each opening found open
        now += RTT
        for _ in range(_starts_allowed(window, now)):
            window.answered(False, True, now, now + RTT)
        now += RTT
        quotas.append(window.quota)
    assert quotas == [1, 2, 3]  # the first opening after the refusal was not clean


def test_a_probe_that_ends_without_a_verdict_is_sent_again():
    window = _first_window(10)
    at = RTT + PROBE_S
    assert window.wait(at, 0) is None
    window.started(at)
    assert window.wait(at + 0.1, 1) == (math.inf, PROBING)
    window.answered(False, False, at, at + 0.2)  # a 503, a reset: no verdict
    assert window.wait(at + 0.2, 0) is None  # the next probe may go


def test_the_success_log_is_bounded_and_never_gives_units_back_early():
    log = SuccessLog()
    for i in range(10 * MAX_ENTRIES):
        log.add(i * 1.0)
    assert log.total == 10 * MAX_ENTRIES
    assert len(log) <= MAX_ENTRIES
    assert log.since(5.0) == log.total  # merged forward: counted later, never given back early
    log.prune(10 * MAX_ENTRIES - 10.5)
    assert log.total == 10


@pytest.mark.parametrize("kind", ["fixed", "moving"])
def test_three_windows_of_work_take_two_periods_and_refuse_little(kind):
    # bench/window_probes.py's simulation: 300 URLs, 16 workers, 4 ms round trips
    taken, refused, late = simulate(kind, 10.0)
    # the burst in flight at the first refusal (15 of 16 workers) and three probes (1, 2, 5 s)
    assert refused <= 16 + 3 and late == 0  # windows 2 and 3 refuse nothing
    assert 20.0 <= taken < 20.5  # the third window opens at 20 s: no wait past it


def test_the_limiter_holds_a_bare_window_and_keeps_its_refusals_from_the_adaptive_rate(clock):
    limiter = LocalLimiter(RateLimit(), clock, workers=16)
    host = "api.example:443"
    for _ in range(10):
        assert limiter.try_acquire(host).granted
        limiter.release(host)
        limiter.record_response(host, throttled=False, started=clock.now)
        clock.advance(0.01)
    assert limiter.try_acquire(host).granted
    limiter.release(host)
    limiter.record_response(host, throttled=True, started=clock.now, bare=True)
    assert host in dict(limiter.snapshot().throttled)  # the first refusal: the adaptive rule's
    assert limiter.try_acquire(host).blocked_by == HOST_PAUSED  # closed: the next probe later
    clock.set(1000.0 + PROBE_S)
    assert limiter.try_acquire(host).granted  # the probe
    assert limiter.try_acquire(host).blocked_by == HOST_BUSY  # alone
    limiter.release(host)
    limiter.record_response(host, throttled=True, started=clock.now, bare=True)
    # a window: the cut of its first refusal read it as a rate; the window rule paces it now
    assert host not in dict(limiter.snapshot().throttled)
    assert host not in dict(limiter.snapshot().concurrency)
    limiter.pause_host(host, 30.0)  # a backoff grown meanwhile does not outlast the probe
    assert dict(limiter.snapshot().paused)[host] == pytest.approx(1.0)  # the 2 s candidate
    clock.set(1000.0 + 10.0)
    assert limiter.try_acquire(host).blocked_by != HOST_RATE


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
    window.answered(False, True, 0.101, 0.103)  # sent after it, counted before it by the server
    assert window.quota == 11
