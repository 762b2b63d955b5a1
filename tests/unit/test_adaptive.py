"""AdaptiveRate (AIMD per host) alone and as LocalLimiter applies it."""

from __future__ import annotations

import pytest

from poolfetch.core.adaptive import _RAMP_STARTS as RAMP_STARTS_FOR_TEST
from poolfetch.core.adaptive import (
    BURST_SHARE,
    COOLDOWN_S,
    CUT,
    DECREASE,
    GROWTH,
    INCREASE_PER_S,
    MARGIN,
    MIN_RATE,
    MIN_WINDOW_S,
    NEAR,
    PROBE_GROWTH,
    PROBE_PER_S,
    RAMP_LIFT_S,
    AdaptiveRate,
)
from poolfetch.core.bucket_bracket import (
    BUCKET_MARGIN,
    BUCKET_PROBE_AFTER_S,
    BUCKET_PROBE_MARGIN,
    CUT_MIN,
    REPEATED_S,
)
from poolfetch.core.config import RateLimit
from poolfetch.core.limiter import IDLE_EVICT_SECONDS, LocalLimiter


def _started_at(rate: AdaptiveRate, per_second: float, seconds: float, t0: float = 0.0) -> float:
    """Note starts at ``per_second`` for ``seconds``; return the time of the last start."""
    n = int(per_second * seconds)
    for i in range(n):
        rate.note_start(t0 + i / per_second)
    return t0 + (n - 1) / per_second


def _succeeded_at(rate: AdaptiveRate, per_second: float, seconds: float, t0: float = 0.0) -> float:
    """Starts and successes at ``per_second`` for ``seconds``; return the last time."""
    n = int(per_second * seconds)
    for i in range(n):
        rate.note_start(t0 + i / per_second)
        rate.on_success(t0 + i / per_second)
    return t0 + (n - 1) / per_second


def test_host_starts_unlimited():
    assert AdaptiveRate(ceiling=None).rate is None
    assert AdaptiveRate(ceiling=None).at_rest


def test_first_throttle_sets_the_rate_from_what_the_server_accepted():
    rate = AdaptiveRate(ceiling=None)
    last = _succeeded_at(rate, per_second=40, seconds=1)
    assert rate.on_throttle(last + 0.001) == pytest.approx(40 * MARGIN, rel=0.05)
    assert rate.throttles == 1
    assert not rate.at_rest


def test_a_burst_is_measured_over_at_least_the_minimum_window():
    rate = AdaptiveRate(ceiling=None)
    for i in range(10):  # ten answers within 5 ms: not a rate of 2,000/s
        rate.note_start(i * 0.0005)
        rate.on_success(i * 0.0005)
    assert rate.on_throttle(0.006) == pytest.approx(10 / MIN_WINDOW_S * MARGIN, rel=0.05)


def test_first_throttle_without_any_success_halves_the_send_rate():
    rate = AdaptiveRate(ceiling=None)
    last = _started_at(rate, per_second=20, seconds=2)
    assert rate.on_throttle(last) == pytest.approx(20 * DECREASE, rel=0.02)


def test_first_throttle_never_exceeds_the_ceiling():
    rate = AdaptiveRate(ceiling=4.0)
    last = _succeeded_at(rate, per_second=50, seconds=1)
    assert rate.on_throttle(last) == pytest.approx(4.0)


def test_one_episode_is_one_cut_and_late_answers_only_refine_upwards():
    rate = AdaptiveRate(ceiling=None)
    for i in range(5):
        rate.note_start(i * 0.001)
        rate.on_success(i * 0.001)
    first = rate.on_throttle(0.005)
    assert first == pytest.approx(5 / MIN_WINDOW_S * MARGIN, rel=0.05)
    for i in range(5, 10):  # successes sent in the same burst, handled after the 429
        rate.on_success(0.006 + i * 0.001)
    refined = rate.on_throttle(0.02)
    assert refined == pytest.approx(10 / MIN_WINDOW_S * MARGIN, rel=0.05)
    assert rate.throttles == 1
    assert rate.on_throttle(0.5) == refined  # nothing new: no change, no second cut


def test_a_later_throttle_cuts_between_decrease_and_cut():
    rate = AdaptiveRate(ceiling=None)
    last = _succeeded_at(rate, per_second=40, seconds=1)
    first = rate.on_throttle(last)
    assert first is not None
    second = rate.on_throttle(last + COOLDOWN_S + 0.01)
    assert first * DECREASE - 1e-9 <= second <= first * CUT + 1e-9
    assert rate.throttles == 2


def test_never_below_min_rate():
    rate = AdaptiveRate(ceiling=None)
    now = _started_at(rate, per_second=10, seconds=1)
    for _ in range(60):
        now += COOLDOWN_S + 0.01
        rate.on_throttle(now)
    assert rate.rate == MIN_RATE


def test_grows_quickly_after_the_first_throttle_and_probes_slowly_after_a_paced_one():
    rate = AdaptiveRate(ceiling=None)
    last = _succeeded_at(rate, per_second=100, seconds=1)
    first = rate.on_throttle(last)  # from unlimited: unsure, grow quickly until refused again
    assert first is not None
    resumed = last + COOLDOWN_S
    rate.note_pause(resumed)  # Retry-After, as LocalLimiter.pause_host notes it
    now = _succeeded_at(rate, per_second=100, seconds=1, t0=resumed)
    fast = rate.rate  # after about one second of clean running (paused time does not count)
    assert fast is not None
    assert fast - first >= 0.95 * max(INCREASE_PER_S, first * GROWTH)  # in 0.99 s
    # refused while paced: the rate lands under what was accepted, near it growth is probing
    later = _succeeded_at(rate, per_second=100, seconds=1, t0=now + 0.01) + 0.01
    low = rate.on_throttle(later)
    assert low is not None and low >= NEAR * 100 * 0.99  # the server took 100/s
    now = later + COOLDOWN_S
    rate.on_success(now)
    before = rate.rate
    assert before is not None
    after = rate.on_success(now + 1.0)
    assert after == pytest.approx(before + max(PROBE_PER_S, before * PROBE_GROWTH))


def test_successes_in_the_same_instant_raise_nothing():
    rate = AdaptiveRate(ceiling=100.0)
    last = _started_at(rate, per_second=20, seconds=1)
    cut = rate.on_throttle(last)
    raised = rate.on_success(last + 2.0)
    assert raised is not None and raised > cut
    assert rate.on_success(last + 2.01) == raised


def test_reaching_the_ceiling_lifts_the_cap():
    rate = AdaptiveRate(ceiling=10.0)
    last = _started_at(rate, per_second=20, seconds=1)
    assert rate.on_throttle(last) == pytest.approx(10.0 * DECREASE * 2, rel=0.01) or rate.rate
    now = last
    for _ in range(100):
        now += 1.0
        if rate.on_success(now) is None:
            break
    assert rate.rate is None and rate.at_rest
    assert rate.on_success(now + 1.0) is None


def test_measurement_restarts_after_a_pause():
    rate = AdaptiveRate(ceiling=None)
    last = _succeeded_at(rate, per_second=100, seconds=1)
    rate.note_pause(last + 1.0)
    for i in range(10):  # after the pause only 10 answers in 1 s were accepted
        rate.on_success(last + 1.0 + i * 0.1)
    assert rate.on_throttle(last + 2.0) == pytest.approx(10 * MARGIN, rel=0.05)


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


def test_successes_of_the_same_burst_handled_after_the_429_refine_the_estimate():
    rate = AdaptiveRate(ceiling=None)
    rate.note_start(0.0)
    rate.on_success(0.0)
    first = rate.on_throttle(0.001)  # the 429 handled before the other answers of the burst
    assert first == pytest.approx(1 / MIN_WINDOW_S * MARGIN, rel=0.05)
    for i in range(1, 11):
        rate.on_success(0.001 + i * 0.0005)
    assert rate.rate == pytest.approx(11 / MIN_WINDOW_S * MARGIN, rel=0.05)
    assert rate.throttles == 1


def _opening_burst(rate: AdaptiveRate, accepted: int, refused_at: float) -> None:
    """``accepted`` requests of the opening burst answered ok, then the first 429."""
    for i in range(accepted):
        rate.note_start(i * 0.0005)
        rate.on_success(0.001 + i * 0.0005)
    rate.on_throttle(refused_at)


def test_the_opening_burst_the_server_took_is_remembered():
    rate = AdaptiveRate(ceiling=None)
    _opening_burst(rate, accepted=6, refused_at=0.01)
    for i in range(8):  # answers of the same burst still arriving after the 429
        rate.on_success(0.02 + i * 0.001)
    assert rate.burst == int(14 * BURST_SHARE)


def test_a_throttle_long_after_the_start_is_no_burst_measure():
    rate = AdaptiveRate(ceiling=None)
    last = _succeeded_at(rate, per_second=20, seconds=5)
    rate.on_throttle(last)
    assert rate.burst == 1


@pytest.mark.parametrize(("per_host_qps", "banked"), [(None, 7), (100.0, 1)])
def test_the_host_bucket_banks_the_servers_burst_unless_per_host_qps_is_set(
    clock, per_host_qps, banked
):
    limiter = LocalLimiter(RateLimit(per_host_qps=per_host_qps), clock=clock)
    host = "h:80"
    for _ in range(14):  # the opening burst: 14 start within 0.14 s and are answered ok
        assert limiter.try_acquire(host).granted
        clock.advance(0.01)
    for _ in range(14):
        limiter.release(host)
        limiter.record_response(host, throttled=False)
    limiter.record_response(host, throttled=True)
    limiter.pause_host(host, 1.0)
    clock.advance(2.0)  # the pause is over and the bucket had time to fill
    granted = 0
    while limiter.try_acquire(host).granted:
        granted += 1
    assert granted == banked


# --- a bucket without burst: ramp until a paced refusal ----------------------------------------


def _paced(rate: AdaptiveRate, t: float, until: float) -> float:
    """Starts and successes at the host's current rate from ``t`` to ``until``."""
    while t < until and rate.rate is not None:
        step = 1.0 / rate.rate
        rate.note_start(t)
        rate.on_success(t + 0.001)
        t += step
    return t


def _burst_free_opening(rate: AdaptiveRate) -> None:
    """Sixteen requests at once; the server takes one (a bucket without burst), pause 1 s."""
    for i in range(16):
        rate.note_start(i * 0.0001)
    rate.on_success(0.002)
    rate.on_throttle(0.003, started=0.0)
    rate.note_pause(1.003, now=0.003)


def test_a_server_that_takes_one_of_the_opening_burst_is_ramped_to_quickly():
    rate = AdaptiveRate(ceiling=None)
    _burst_free_opening(rate)
    assert rate.rate == pytest.approx(MARGIN / MIN_WINDOW_S)
    assert rate.burst == 1  # nothing banked for a bucket that holds one
    _paced(rate, 1.003, 3.0)
    assert rate.rate is not None and rate.rate > 100  # doubling every RAMP_DOUBLING_S


def test_the_paced_refusal_holds_just_under_the_pace_it_was_sent_at_then_probes():
    rate = AdaptiveRate(ceiling=None)
    _burst_free_opening(rate)
    t = 1.003
    while rate.rate is not None and rate.rate < 50:
        t = _paced(rate, t, t + 0.02)
    for i in range(RAMP_STARTS_FOR_TEST):  # the last starts before the refusal, at 50/s
        rate.note_start(t + i * 0.02)
    refused_sent = t + (RAMP_STARTS_FOR_TEST - 1) * 0.02
    held = rate.on_throttle(refused_sent + 0.002, started=refused_sent)
    assert held == pytest.approx(50 * BUCKET_MARGIN, rel=0.02)
    rate.note_pause(refused_sent + 1.0, now=refused_sent)
    _paced(rate, refused_sent + 1.0, refused_sent + 11.0)
    assert rate.rate == pytest.approx(held, rel=0.02)  # it holds: probing is slow


def test_a_later_refusal_of_a_bucket_without_burst_cuts_a_little():
    rate = AdaptiveRate(ceiling=None)
    _burst_free_opening(rate)
    t = _paced(rate, 1.003, 2.5)
    held = rate.on_throttle(t, started=t - 0.01)
    assert held is not None
    t = _paced(rate, t + 2.0, t + 4.0)
    assert rate.on_throttle(t, started=t - 0.01) == pytest.approx(held * CUT_MIN, rel=0.02)


def test_a_ramp_without_refusal_is_lifted():
    rate = AdaptiveRate(ceiling=None)
    _burst_free_opening(rate)
    _paced(rate, 1.003, 1.003 + RAMP_LIFT_S + 1.0)
    assert rate.rate is None


# --- a window answering a bare 429 -------------------------------------------------------------


def test_a_bare_refusal_holds_just_under_what_was_accepted_since_the_last_one():
    # a window of 100 per 10 s: the opening takes 100 at once; the host's backoff pauses
    # outlast the window (it reopens at 10 s, the host comes back at 17 s)
    rate = AdaptiveRate(ceiling=None)
    last = _succeeded_at(rate, per_second=400, seconds=0.25)
    rate.on_throttle(last + 0.001, bare=True)
    for _ in range(5):  # late answers of the opening burst: not the next window's
        rate.on_success(last + 0.01)
    rate.note_pause(last + 1.0, now=last + 0.001)
    assert rate.on_throttle(last + 1.01, bare=True) == rate.rate  # the same episode
    rate.note_pause(17.0, now=9.0)  # a long backoff after more refusals, window still closed
    t = _succeeded_at(rate, per_second=400, seconds=0.25, t0=17.0)
    held = rate.on_throttle(t + 0.001, bare=True)
    assert held == pytest.approx(100 / (t - last - 8.0) * MARGIN, rel=0.01)
    assert held is not None and 9 <= held <= 12  # ten per second, not 400
    assert rate.burst == 1


def test_a_bare_refusal_with_nothing_accepted_since_is_no_new_cut():
    rate = AdaptiveRate(ceiling=None)
    last = _succeeded_at(rate, per_second=200, seconds=0.25)
    first = rate.on_throttle(last + 0.001, bare=True)
    assert rate.on_throttle(last + 1.5, bare=True) == first  # the window is still closed
    assert rate.throttles == 1


def test_a_refusal_with_retry_after_is_not_measured_as_a_window():
    rate = AdaptiveRate(ceiling=None)
    last = _succeeded_at(rate, per_second=200, seconds=0.25)
    rate.on_throttle(last + 0.001)
    assert rate.on_throttle(last + 1.5) == pytest.approx(rate.rate)
    assert rate.throttles == 2  # a new episode, cut by the ordinary rule


def test_an_opening_burst_answered_late_is_still_the_opening_burst():
    rate = AdaptiveRate(ceiling=None)
    for i in range(16):
        rate.note_start(i * 0.0001)
    rate.on_success(0.4)  # a busy client handles the answers 0.4 s after sending them
    rate.on_throttle(0.41, started=0.0)
    rate.note_pause(1.41, now=0.41)
    _paced(rate, 1.41, 3.5)
    assert rate.rate is not None and rate.rate > 100  # ramped: the server took one at once


def test_a_first_throttle_handled_before_the_bursts_success_is_corrected_down():
    """Ten requests at once, one let through: its 429s may be handled before its success.
    The cut from the send rate is only a guess; the success arriving within the cooldown
    sets the rate from what was accepted, as if it had been handled first."""
    rate = AdaptiveRate(ceiling=None)
    for i in range(10):
        rate.note_start(i * 0.0001)
    guessed = rate.on_throttle(0.002)
    # an opening burst refused before any success: at most one was taken (not half the send
    # rate of a burst, hundreds a second)
    assert guessed == pytest.approx(MARGIN / MIN_WINDOW_S, rel=0.05)
    assert rate.on_success(0.003) == pytest.approx(MARGIN / MIN_WINDOW_S, rel=0.05)
    assert rate.on_throttle(0.004) == pytest.approx(MARGIN / MIN_WINDOW_S, rel=0.05)


# --- a bucket without burst found by slow start: the spacing it accepted ----------------------


def test_a_bucket_found_in_slow_start_ramps_from_the_spacing_it_accepted():
    rate = AdaptiveRate(ceiling=None)
    rate.note_start(0.0)  # the first request alone, answered in 60 ms
    rate.on_success(0.06, started=0.0)
    rate.note_start(0.06)  # then two at once: the bucket takes the first, 60 ms later
    rate.note_start(0.0601)
    rate.on_success(0.065, started=0.06)
    held = rate.on_throttle(0.0605, started=0.0601)
    assert held == pytest.approx(BUCKET_MARGIN / 0.06, rel=0.01)


def test_the_paced_refusal_holds_under_the_closest_spacing_the_bucket_took():
    rate = AdaptiveRate(ceiling=None)
    _burst_free_opening(rate)
    t = 1.003
    for gap in (0.1, 0.08, 0.06, 0.05):  # the ramp's accepted starts, closer and closer
        rate.note_start(t)
        rate.on_success(t + 0.001, started=t)
        t += gap
    rate.note_start(t)
    rate.on_success(t + 0.001, started=t)
    rate.note_start(t + 0.045)  # refused: closer than 1/rate to the last one taken
    held = rate.on_throttle(t + 0.046, started=t + 0.045)
    # the rate lies between 1 / 0.05 and 1 / 0.045: the margin from between, at most 1 / 0.05
    assert held == pytest.approx(min(20.0, BUCKET_MARGIN * (20.0 / 0.045) ** 0.5), rel=0.01)
    assert held > 20.0 * BUCKET_MARGIN * 1.04


def test_the_paced_refusal_after_a_coarse_step_holds_under_the_spacing_between():
    rate = AdaptiveRate(ceiling=None)
    held, _ = _bucket_found(rate)  # refused 40 ms after the last taken, taken 60 ms after
    # the margin under the middle of the two, not at the spacing taken (a step of 50 % would
    # give a third of the rate away for the rest of the run)
    assert held == pytest.approx(BUCKET_MARGIN / (0.04 * 0.06) ** 0.5, rel=0.01)
    assert 1 / 0.06 < held < 1 / 0.04


def _bucket_found(rate: AdaptiveRate) -> tuple[float, float]:
    """A ramp that took 60 ms and was refused at 40 ms; return the held rate and the time."""
    _burst_free_opening(rate)
    t = 1.003
    for gap in (0.1, 0.08, 0.06):
        rate.note_start(t)
        rate.on_success(t + 0.001, started=t)
        t += gap
    rate.note_start(t)
    rate.on_success(t + 0.001, started=t)
    rate.note_start(t + 0.04)
    held = rate.on_throttle(t + 0.041, started=t + 0.04)
    assert held is not None
    return held, t + 1.041


def _held_for(rate: AdaptiveRate, t: float, spacing: float, n: int) -> float:
    """``n`` starts accepted ``spacing`` apart from ``t``; return the time of the next."""
    for _ in range(n):
        rate.note_start(t)
        rate.on_success(t + 0.001, started=t)
        t += spacing
    return t


def test_a_later_refusal_of_a_bucket_without_burst_narrows_the_bracket():
    rate = AdaptiveRate(ceiling=None)
    held, t = _bucket_found(rate)
    t = _held_for(rate, t, 1 / held, 20)  # 51.6 ms apart: taken
    rate.note_start(t - 0.0005)  # jitter: sent 51.1 ms after the last taken, refused
    crept = rate.rate  # up a little meanwhile (BUCKET_CREEP)
    assert crept is not None
    cut = rate.on_throttle(t, started=t - 0.0005)
    # the bucket's spacing is between the 51.1 ms refused and the 51.6 ms taken
    assert cut == pytest.approx(crept * CUT_MIN, rel=0.01)  # a small cut, not CUT
    assert cut is not None and cut > held * CUT * 1.04
    t = _held_for(rate, t + 1.0, 1 / cut, 20)
    rate.note_start(t + 0.02)  # refused wider than a spacing taken: send jitter under load
    crept = rate.rate
    assert crept is not None
    again = rate.on_throttle(t + 0.021, started=t + 0.02)  # 2 s after the last cut
    assert again == pytest.approx(crept * CUT, rel=0.01)  # wider jitter than 5 %: cut 10 %
    assert again is not None
    t = _held_for(rate, t + 1.021, 1 / again, int(REPEATED_S * again))
    rate.note_start(t + 0.02)  # jitter again, but the last cut held for REPEATED_S
    before = rate.rate  # probed up a little meanwhile
    assert before is not None
    assert rate.on_throttle(t + 0.021, started=t + 0.02) == pytest.approx(before * CUT_MIN)


def test_refusals_of_a_held_bucket_bisect_towards_the_spacing_taken():
    rate = AdaptiveRate(ceiling=None)
    held, t = _bucket_found(rate)
    assert 1 / held < 0.058
    # the bucket's spacing is really 58 ms: every refusal narrows the bracket (40, 60] from
    # below until the held spacing is accepted, never below the 60 ms taken
    for _ in range(6):
        spacing = 1 / held
        if spacing >= 0.058:
            break
        t = _held_for(rate, t, spacing, 1)
        rate.note_start(t)
        cut = rate.on_throttle(t + 0.001, started=t)
        assert cut is not None
        held, t = cut, t + 1.001
    assert 0.058 <= 1 / held <= 0.06


def test_the_bracket_never_holds_wider_than_the_spacing_taken():
    rate = AdaptiveRate(ceiling=None)
    _burst_free_opening(rate)
    t = _held_for(rate, 1.003, 0.06, 4)  # taken 60 ms apart, then refused at 57 ms
    rate.note_start(t - 0.003)
    assert rate.on_throttle(t - 0.002, started=t - 0.003) == pytest.approx(1 / 0.06)


def _follow(rate: AdaptiveRate, t: float, until: float) -> float:
    """Starts accepted at the host's current rate, as the scheduler sends them, until
    ``until``; return the time of the next."""
    while t < until and rate.rate is not None:
        rate.note_start(t)
        rate.on_success(t + 0.001, started=t)
        t += 1.0 / rate.rate
    return t


def test_a_found_bucket_is_narrowed_from_above_a_few_steps_then_held():
    # the ramp's bracket (taken 60 ms, refused 40) held it at 51.6 ms; the bucket takes closer
    # spacings, so each step after BUCKET_PROBE_AFTER_S of clean running goes halfway (in
    # ratio) to the refused spacing, never within BUCKET_PROBE_MARGIN of it; then it holds
    rate = AdaptiveRate(ceiling=None)
    held, t = _bucket_found(rate)
    rate.note_pause(t, now=t - 1.0)  # the refusal's Retry-After: clean running from then on
    t = _follow(rate, t, t + BUCKET_PROBE_AFTER_S - 0.2)
    assert rate.rate == pytest.approx(held)  # not before its time
    t = _follow(rate, t, t + 0.4)
    first = rate.rate
    assert first == pytest.approx(1 / (0.04 / held) ** 0.5, rel=0.01)  # 1 / sqrt(40 * 51.6 ms)
    t = _follow(rate, t, t + 60.0)
    final = rate.rate
    assert final is not None and first is not None and final > first
    assert 1 / final >= 0.04 * BUCKET_PROBE_MARGIN  # never within the margin of the refused
    # each step ended at a spacing the bucket took, and a step of under 1 % is not taken
    assert 1 / final < 0.04 * BUCKET_PROBE_MARGIN * 1.01 or 1 / final > (0.04 * 0.0454) ** 0.5
    _follow(rate, t, t + 120.0)
    assert rate.rate == pytest.approx(final)  # held from then on: no creep past it


def test_a_refusal_after_a_step_ends_the_narrowing_for_good():
    rate = AdaptiveRate(ceiling=None)
    _, t = _bucket_found(rate)
    t = _follow(rate, t, t + BUCKET_PROBE_AFTER_S + 0.2)
    stepped = rate.rate
    assert stepped is not None
    rate.note_start(t - 0.002)  # the step was too close (or the sends jittered): refused
    cut = rate.on_throttle(t - 0.001, started=t - 0.002)
    assert cut is not None and cut < stepped
    _follow(rate, t + 1.0, t + 120.0)
    assert rate.rate == pytest.approx(cut)  # no step again, whatever the clean running


def test_each_later_refusal_lowers_the_top_a_little_and_a_deeper_cut_creeps_back_to_it():
    rate = AdaptiveRate(ceiling=None)
    _, t = _bucket_found(rate)
    t = _follow(rate, t, t + 5.0)
    held = rate.rate  # the top, narrowed meanwhile
    assert held is not None
    rate.note_start(t + 0.002)  # refused at a spacing the bucket took: the client's jitter
    assert rate.on_throttle(t + 0.003, started=t + 0.002) == pytest.approx(held * CUT_MIN)
    t = _follow(rate, t + 1.003, t + 3.0)
    rate.note_start(t + 0.002)  # again, within REPEATED_S: cut by CUT
    cut = rate.on_throttle(t + 0.003, started=t + 0.002)
    assert cut == pytest.approx(held * CUT_MIN * CUT)
    t = _follow(rate, t + 1.003, t + 2.0)  # 1 s of clean running
    crept = rate.rate
    assert crept is not None and cut < crept < held * CUT_MIN**2
    _follow(rate, t, t + 60.0)
    assert rate.rate == pytest.approx(held * CUT_MIN**2)  # back at the top, no further
