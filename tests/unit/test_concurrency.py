"""AdaptiveConcurrency, stepped by hand, and its place in LocalLimiter (an injected clock)."""

from __future__ import annotations

from poolfetch.core.concurrency import PROBE_S, AdaptiveConcurrency, says_too_many
from poolfetch.core.config import RateLimit
from poolfetch.core.errors import ConnectError, ConnectionRefused, ConnectionReset
from poolfetch.core.limiter import HOST_BUSY, LocalLimiter
from poolfetch.core.models import AttemptOutcome


def _refuse_burst(learned: AdaptiveConcurrency, started: float, now: float, sent: int, took: int):
    """``sent`` requests started at ``started``; all but ``took`` are refused, one by one."""
    in_flight = sent
    for _ in range(sent - took):
        in_flight -= 1
        learned.on_overload(now, started, in_flight)
        now += 0.001


def _opening(ceiling: int = 16, took: int = 4) -> AdaptiveConcurrency:
    learned = AdaptiveConcurrency(ceiling)
    _refuse_burst(learned, started=0.0, now=0.01, sent=ceiling, took=took)
    return learned


# --- what counts as "too many at once" ---------------------------------------------------------


def test_a_bare_503_and_a_refused_connection_say_too_many():
    assert says_too_many(AttemptOutcome(0.0, 0.0, status=503))
    assert says_too_many(AttemptOutcome(0.0, 0.0, error=ConnectionRefused("refused")))
    assert says_too_many(AttemptOutcome(0.0, 0.0, error=ConnectionReset("reset")))


def test_a_503_with_retry_after_a_429_and_other_errors_do_not():
    assert not says_too_many(AttemptOutcome(0.0, 0.0, status=503, retry_after="1"))
    assert not says_too_many(AttemptOutcome(0.0, 0.0, status=429))
    assert not says_too_many(AttemptOutcome(0.0, 0.0, status=500))
    assert not says_too_many(AttemptOutcome(0.0, 0.0, error=ConnectError("DNS")))


# --- the rule ----------------------------------------------------------------------------------


def test_nothing_learned_means_no_cap_beyond_the_configured_one():
    assert AdaptiveConcurrency(16).cap is None
    assert AdaptiveConcurrency(8, configured=8).cap == 8
    assert AdaptiveConcurrency(16).at_rest


def test_the_opening_episode_lands_on_what_the_server_took_at_once():
    learned = _opening(ceiling=16, took=4)
    assert learned.cap == 4
    assert learned.overloads == 1  # twelve refusals, one episode
    assert not learned.at_rest


def test_a_refusal_of_a_request_started_after_the_cut_is_a_new_episode():
    learned = _opening(took=4)
    learned.on_overload(now=1.0, started=0.5, in_flight=4)
    assert learned.overloads == 2


def test_a_later_cut_lands_between_decrease_and_cut_of_what_was_refused():
    learned = AdaptiveConcurrency(64)
    learned.limit = 40.0
    learned.on_overload(now=1.0, started=0.9, in_flight=39)  # 40 refused, 39 still going
    assert learned.cap == 36  # never less than a 10 % cut
    learned.on_overload(now=2.0, started=1.9, in_flight=5)  # 6 refused: took 5 at once
    assert learned.cap == 5  # 0.9 * 6 = 5.4, at least half of 6
    learned.on_overload(now=3.0, started=2.9, in_flight=1)
    assert learned.cap == 1  # half of 2, never below one


def test_later_refusals_of_the_same_burst_do_not_cut_again_once_sure():
    learned = AdaptiveConcurrency(64)
    learned.limit = 20.0
    learned.on_overload(now=1.0, started=0.9, in_flight=19)
    cap = learned.cap
    for n in range(18, 10, -1):
        learned.on_overload(now=1.01, started=0.95, in_flight=n)
    assert learned.cap == cap
    assert learned.overloads == 1


def test_growth_only_while_the_limit_is_in_use():
    learned = AdaptiveConcurrency(16)
    learned.limit = 8.0
    learned.on_overload(now=0.0, started=0.0, in_flight=16)  # 17 refused: best known is 16
    learned.limit = 8.0
    for i in range(50):
        learned.on_success(now=1.0 + i, started=0.5 + i, in_flight=2)  # 3 of 8 in use
    assert learned.limit == 8.0
    for i in range(9):
        learned.on_success(now=60.0 + i, started=59.5 + i, in_flight=7)  # 8 of 8 in use
    assert learned.cap == 9  # +1/limit per success: about one per round trip


def test_successes_of_the_burst_that_was_cut_for_raise_nothing():
    learned = _opening(took=4)
    for _ in range(4):
        learned.on_success(now=0.1, started=0.0, in_flight=3)
    assert learned.cap == 4


def test_after_a_refusal_at_the_limit_it_holds_then_probes_one_more_rarely():
    learned = _opening(took=4)
    now = 0.2
    while learned.cap == 4:  # fast growth toward the refused level
        learned.on_success(now, started=now - 0.1, in_flight=learned.cap - 1)
        now += 0.025
    assert learned.cap == 5 and now < 1.0
    learned.on_overload(now, started=now - 0.001, in_flight=4)  # the server takes four
    assert learned.cap == 4
    refused_at = now
    while learned.cap == 4:
        now += 0.025
        learned.on_success(now, started=now - 0.1, in_flight=3)
    assert learned.cap == 5
    assert PROBE_S <= now - refused_at <= PROBE_S + 0.2


def test_a_probe_that_holds_grows_on_and_the_ceiling_lifts_the_limit():
    learned = AdaptiveConcurrency(6)
    _refuse_burst(learned, started=0.0, now=0.01, sent=6, took=4)
    now, steps = 0.2, 0
    while learned.limit is not None and steps < 10_000:
        learned.on_success(now, started=now - 0.1, in_flight=(learned.cap or 1) - 1)
        now += 0.05
        steps += 1
    assert learned.limit is None and learned.at_rest  # back to unlimited: forgotten
    assert learned.cap is None


def test_announce_tells_each_change_once_after_the_episode():
    learned = AdaptiveConcurrency(16)
    learned.on_overload(now=0.01, started=0.0, in_flight=15)
    assert not learned.announce(started=0.0)  # the burst is still being answered
    _refuse_burst(learned, started=0.0, now=0.02, sent=15, took=4)
    assert learned.announce(started=0.05)
    assert not learned.announce(started=0.06)


# --- in the limiter ----------------------------------------------------------------------------


def _fill(limiter: LocalLimiter, host: str, most: int = 100) -> int:
    n = 0
    while n < most and limiter.try_acquire(host).granted:
        n += 1
    return n


def test_limiter_holds_the_host_at_its_learned_in_flight_limit(clock):
    limiter = LocalLimiter(RateLimit(adaptive=True), clock=clock, workers=16)
    started = clock.now
    assert _fill(limiter, "h:80") == 100  # nothing learned: no cap (the workers bound it)
    for _ in range(84):
        limiter.release("h:80")
    clock.advance(0.005)
    for _ in range(12):  # the server took four
        limiter.release("h:80")
        limiter.record_response("h:80", throttled=False, overloaded=True, started=started)
    admission = limiter.try_acquire("h:80")
    assert admission.blocked_by == HOST_BUSY
    limiter.release("h:80")
    limiter.record_response("h:80", throttled=False, started=started)
    assert limiter.try_acquire("h:80").granted
    assert limiter.snapshot().concurrency == (("h:80", 4),)
    assert _fill(limiter, "other:80") == 100  # other hosts are not affected


def test_a_refusal_with_nothing_else_in_flight_is_no_overload(clock):
    limiter = LocalLimiter(RateLimit(adaptive=True), clock=clock, workers=16)
    assert limiter.try_acquire("h:80").granted
    limiter.release("h:80")
    limiter.record_response("h:80", throttled=False, overloaded=True, started=clock.now)
    assert _fill(limiter, "h:80") == 100
    assert limiter.snapshot().concurrency == ()


def test_overload_leaves_the_rate_alone_and_a_429_leaves_the_concurrency_alone(clock):
    limiter = LocalLimiter(RateLimit(adaptive=True), clock=clock, workers=8)
    started = clock.now
    _fill(limiter, "h:80", most=8)
    limiter.release("h:80")
    limiter.record_response("h:80", throttled=False, overloaded=True, started=started)
    assert limiter.snapshot().throttled == ()
    limiter.release("h:80")
    limiter.record_response("h:80", throttled=True, overloaded=False, started=started)
    snapshot = limiter.snapshot()
    assert [h for h, _ in snapshot.throttled] == ["h:80"]
    assert snapshot.concurrency == (("h:80", 7),)


def test_never_above_per_host_connections_and_no_learning_without_adaptive(clock):
    capped = LocalLimiter(RateLimit(per_host_connections=3), clock=clock, workers=16)
    assert _fill(capped, "h:80") == 3
    plain = LocalLimiter(RateLimit(adaptive=False), clock=clock, workers=4)
    started = clock.now
    assert _fill(plain, "h:80") == 100  # without --adaptive the limiter bounds no in-flight
    for _ in range(90):
        plain.release("h:80")
        plain.record_response("h:80", throttled=False, overloaded=True, started=started)
    assert plain.snapshot().concurrency == ()


def test_a_host_with_a_learned_limit_is_not_evicted(clock):
    limiter = LocalLimiter(RateLimit(adaptive=True), clock=clock, workers=4)
    started = clock.now
    _fill(limiter, "h:80", most=4)
    limiter.release("h:80")
    limiter.record_response("h:80", throttled=False, overloaded=True, started=started)
    for _ in range(3):
        limiter.release("h:80")
        limiter.record_response("h:80", throttled=False, started=started)
    clock.advance(120.0)
    limiter.try_acquire("other:80")  # sweeps idle hosts
    assert limiter.snapshot().concurrency == (("h:80", 3),)
