"""AdaptiveConcurrency, stepped by hand, and its place in LocalLimiter (an injected clock)."""

from __future__ import annotations

import pytest

from poolfetch.core.concurrency import (
    COSTLY_PAUSES,
    COSTLY_PROBE_S,
    PROBE_S,
    SLOW_START_DOUBLING_S,
    AdaptiveConcurrency,
    says_too_many,
)
from poolfetch.core.config import RateLimit
from poolfetch.core.errors import ConnectError, ConnectionRefused, ConnectionReset
from poolfetch.core.limiter import LocalLimiter
from poolfetch.core.limiter_api import HOST_BUSY
from poolfetch.core.models import AttemptOutcome


def _refuse_burst(learned: AdaptiveConcurrency, started: float, now: float, sent: int, took: int):
    """``sent`` requests started at ``started``; all but ``took`` are refused, one by one."""
    in_flight = sent
    for _ in range(sent - took):
        in_flight -= 1
        learned.on_overload(now, started, in_flight)
        now += 0.001


def _unlimited(ceiling: int = 16) -> AdaptiveConcurrency:
    """A host past slow start without a refusal: no cap."""
    learned = AdaptiveConcurrency(ceiling)
    learned.started(0.0)
    assert learned.cap_at(100.0) is None and not learned.slow_start
    return learned


def _opening(ceiling: int = 16, took: int = 4) -> AdaptiveConcurrency:
    learned = _unlimited(ceiling)
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
    assert _unlimited(16).cap is None
    configured = AdaptiveConcurrency(8, configured=8)
    configured.started(0.0)
    assert configured.cap_at(100.0) == 8
    assert _unlimited(16).at_rest


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
    learned = _unlimited(64)
    learned.limit = 40.0
    learned.on_overload(now=1.0, started=0.9, in_flight=39)  # 40 refused, 39 still going
    assert learned.cap == 36  # never less than a 10 % cut
    learned.on_overload(now=2.0, started=1.9, in_flight=5)  # 6 refused: took 5 at once
    assert learned.cap == 5  # 0.9 * 6 = 5.4, at least half of 6
    learned.on_overload(now=3.0, started=2.9, in_flight=1)
    assert learned.cap == 1  # half of 2, never below one


def test_later_refusals_of_the_same_burst_do_not_cut_again_once_sure():
    learned = _unlimited(64)
    learned.limit = 20.0
    learned.on_overload(now=1.0, started=0.9, in_flight=19)
    cap = learned.cap
    for n in range(18, 10, -1):
        learned.on_overload(now=1.01, started=0.95, in_flight=n)
    assert learned.cap == cap
    assert learned.overloads == 1


def test_growth_only_while_the_limit_is_in_use():
    learned = _unlimited(16)
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


def test_after_the_opening_it_holds_at_what_was_taken_then_probes_one_more_rarely():
    learned = _opening(took=4)  # sixteen at once, twelve refused: the fifth was one too many
    now = 0.2
    while learned.cap == 4 and now < 60.0:
        learned.on_success(now, started=now - 0.1, in_flight=3)
        now += 0.025
    assert learned.cap == 5
    assert PROBE_S <= now - 0.2 <= PROBE_S + 0.2  # not at once: the fifth was refused
    learned.on_overload(now, started=now - 0.001, in_flight=4)  # the probe: refused again
    assert learned.cap == 4


def test_a_probe_that_holds_grows_on_and_the_ceiling_lifts_the_limit():
    learned = _unlimited(6)
    _refuse_burst(learned, started=0.0, now=0.01, sent=6, took=4)
    now, steps = 0.2, 0
    while learned.limit is not None and steps < 10_000:
        learned.on_success(now, started=now - 0.1, in_flight=(learned.cap or 1) - 1)
        now += 0.05
        steps += 1
    assert learned.limit is None and learned.at_rest  # back to unlimited: forgotten
    assert learned.cap is None


def test_announce_tells_each_change_once_after_the_episode():
    learned = _unlimited(16)
    learned.on_overload(now=0.01, started=0.0, in_flight=15)
    assert not learned.announce(started=0.0)  # the burst is still being answered
    _refuse_burst(learned, started=0.0, now=0.02, sent=15, took=4)
    assert learned.announce(started=0.05)
    assert not learned.announce(started=0.06)


# --- in the limiter ----------------------------------------------------------------------------


def _warm(limiter: LocalLimiter, clock, host: str) -> None:
    """One answer to ``host`` after a few seconds: slow start is over at the next request."""
    assert limiter.try_acquire(host).granted
    clock.advance(5.0)
    limiter.release(host)
    limiter.record_response(host, throttled=False, started=clock.now - 5.0)


def _fill(limiter: LocalLimiter, host: str, most: int = 100) -> int:
    n = 0
    while n < most and limiter.try_acquire(host).granted:
        n += 1
    return n


def test_limiter_holds_the_host_at_its_learned_in_flight_limit(clock):
    limiter = LocalLimiter(RateLimit(adaptive=True), clock=clock, workers=16)
    _warm(limiter, clock, "h:80")
    _warm(limiter, clock, "other:80")
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
    _warm(limiter, clock, "h:80")
    assert limiter.try_acquire("h:80").granted
    limiter.release("h:80")
    limiter.record_response("h:80", throttled=False, overloaded=True, started=clock.now)
    assert _fill(limiter, "h:80") == 100
    assert limiter.snapshot().concurrency == ()


def test_overload_leaves_the_rate_alone_and_a_429_leaves_the_concurrency_alone(clock):
    limiter = LocalLimiter(RateLimit(adaptive=True), clock=clock, workers=8)
    _warm(limiter, clock, "h:80")
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
    _warm(capped, clock, "h:80")
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
    _warm(limiter, clock, "h:80")
    started = clock.now
    _fill(limiter, "h:80", most=4)
    clock.advance(0.01)
    for _ in range(2):  # two of the four refused at once: a cap, taking two
        limiter.release("h:80")
        limiter.record_response("h:80", throttled=False, overloaded=True, started=started)
    for _ in range(2):
        limiter.release("h:80")
        limiter.record_response("h:80", throttled=False, started=started)
    clock.advance(120.0)
    limiter.try_acquire("other:80")  # sweeps idle hosts
    assert limiter.snapshot().concurrency == (("h:80", 2),)


# --- slow start, the ceiling memory, a 429 read as a connection cap ----------------------------


def test_slow_start_begins_at_one_and_doubles_per_answered_round():
    learned = AdaptiveConcurrency(16)
    assert learned.cap == 1 and learned.slow_start and not learned.learned
    assert learned.at_rest  # nothing learned yet: a host may be forgotten
    learned.started(0.0)
    learned.on_success(now=0.01, started=0.0, in_flight=0)
    assert learned.cap == 2
    learned.on_success(now=0.02, started=0.01, in_flight=1)  # 2 of 2 in use: three
    learned.on_success(now=0.02, started=0.01, in_flight=2)  # (one more started meanwhile)
    assert learned.cap == 4
    learned.on_success(now=0.03, started=0.02, in_flight=0)  # 1 of 4 in use: no growth
    assert learned.cap == 4
    for _ in range(12):
        learned.on_success(now=0.04, started=0.03, in_flight=15)
    assert learned.cap is None and not learned.slow_start  # the ceiling: unlimited


def test_slow_start_also_doubles_with_time_for_slow_answers():
    learned = AdaptiveConcurrency(16)
    learned.started(10.0)
    assert learned.cap_at(10.0 + SLOW_START_DOUBLING_S) == 2
    assert learned.cap_at(10.0 + 3 * SLOW_START_DOUBLING_S) == 8
    assert learned.cap_at(10.0 + 4 * SLOW_START_DOUBLING_S) is None


def test_a_refusal_in_slow_start_lands_on_what_was_taken_and_ends_it():
    learned = AdaptiveConcurrency(16)
    learned.started(0.0)
    for i in range(4):
        learned.on_success(now=0.1 * (i + 1), started=0.1 * i, in_flight=learned.cap - 1)
    assert learned.cap == 5
    learned.on_overload(now=0.41, started=0.4, in_flight=4)
    assert learned.cap == 4 and learned.learned and not learned.slow_start


def _held_for(learned: AdaptiveConcurrency, now: float) -> tuple[float, float]:
    """Successes at the limit until it probes one more; (seconds it held, when it probed)."""
    cap = learned.cap
    since = now
    while learned.cap == cap and now - since < 1000:
        now += 0.1
        learned.on_success(now, started=now - 0.1, in_flight=(cap or 1) - 1)
    return now - since, now


def test_each_refused_probe_doubles_the_hold_before_the_next():
    learned = _unlimited(16)
    _refuse_burst(learned, started=0.0, now=0.01, sent=6, took=4)  # two refused: takes four
    held, now = _held_for(learned, 0.1)
    assert held == pytest.approx(PROBE_S, abs=0.2)
    learned.on_overload(now + 0.01, started=now, in_flight=4)  # the probe is refused
    held, now = _held_for(learned, now + 0.1)
    assert held == pytest.approx(2 * PROBE_S, abs=0.2)


def test_a_refusal_that_pauses_the_host_holds_probes_much_longer():
    learned = _unlimited(16)
    learned.on_overload(now=0.01, started=0.0, in_flight=4, costly=True)
    held, _ = _held_for(learned, 0.1)
    assert held == pytest.approx(COSTLY_PROBE_S, abs=0.2)


def test_a_cap_found_by_a_pausing_refusal_is_not_probed_again_within_a_long_job():
    # nginx limit_conn 4 with 429 + Retry-After: 1, 1,200 URLs (~30 s): a probe after 30 s
    # cost the job a second whole-host pause
    learned = _unlimited(16)
    learned.on_overload(now=0.01, started=0.0, in_flight=4, costly=True)
    learned.note_pause(1.0)
    held, now = _held_for(learned, 0.1)
    assert held > 100.0
    learned.on_overload(now + 0.01, started=now, in_flight=4, costly=True)  # the probe refused
    again, _ = _held_for(learned, now + 0.1)
    assert again == pytest.approx(2 * held, rel=0.01)


def test_the_hold_after_a_pausing_refusal_grows_with_the_pause_a_probe_costs():
    learned = _unlimited(16)
    learned.on_overload(now=0.01, started=0.0, in_flight=4, costly=True)
    learned.note_pause(3.0)  # Retry-After: 3
    held, _ = _held_for(learned, 0.1)
    assert held == pytest.approx(COSTLY_PAUSES * 3.0, abs=0.2)
    bare = _unlimited(16)
    _refuse_burst(bare, started=0.0, now=0.01, sent=6, took=4)  # a bare 503 pauses nothing
    bare.note_pause(3.0)  # (a pause for some other reason)
    assert _held_for(bare, 0.1)[0] == pytest.approx(PROBE_S, abs=0.2)


def _answered(latency: float, answers: int, in_flight: int) -> AdaptiveConcurrency:
    learned = AdaptiveConcurrency(16)
    learned.started(0.0)
    for i in range(answers):
        now = latency + i * latency / in_flight
        learned.on_success(now, started=now - latency, in_flight=in_flight - 1)
    return learned


def test_a_429_is_a_connection_cap_when_littles_law_bears_it_out():
    # four at once before a 100 ms backend: about 40 answers a second
    cap = _answered(latency=0.1, answers=8, in_flight=4)
    assert cap.explains(now=0.3, in_flight=4)
    assert not cap.explains(now=0.3, in_flight=1)  # the second of two: a bucket's rate
    # a rate limit in front of fast answers: few answers for the concurrency refused
    fast = _answered(latency=0.002, answers=3, in_flight=1)
    assert not fast.explains(now=0.5, in_flight=8)


def test_a_rate_limits_burst_answered_within_milliseconds_is_no_connection_cap():
    # nginx limit_req burst=10 before 6 ms answers: slow start's rounds of 1, 2, 4, 3 answers
    learned = AdaptiveConcurrency(16)
    learned.started(0.0)
    for k, answers in enumerate((1, 2, 4, 3), start=1):
        for _ in range(answers):
            learned.on_success(now=0.006 * k, started=0.006 * (k - 1), in_flight=answers)
    assert not learned.explains(now=0.025, in_flight=7)  # 10 answers, not 7 / 6 ms a second


def test_a_429_below_a_limit_known_to_work_is_a_rate():
    learned = _answered(latency=0.1, answers=8, in_flight=4)
    learned.on_overload(now=0.3, started=0.29, in_flight=8)  # took eight at once
    assert learned.cap == 8
    assert not learned.explains(now=0.31, in_flight=4)
    assert learned.explains(now=0.31, in_flight=7)


class _Host:
    """Requests to ``h:80`` through a limiter, answered 100 ms after they start."""

    def __init__(self, limiter: LocalLimiter, clock) -> None:
        self.limiter, self.clock = limiter, clock
        self.in_flight: list[float] = []

    def answer(self, throttled: bool = False) -> None:
        self.limiter.release("h:80")
        self.limiter.record_response("h:80", throttled=throttled, started=self.in_flight.pop(0))

    def refill(self) -> None:
        while len(self.in_flight) < 64 and self.limiter.try_acquire("h:80").granted:
            self.in_flight.append(self.clock.now)

    def round(self) -> None:
        """100 ms on: every request answered, each answer refilling what it freed."""
        self.clock.advance(0.1)
        for _ in range(len(self.in_flight)):
            self.answer()
            self.refill()


def _capped_by_a_429(limiter: LocalLimiter, clock) -> _Host:
    """Slow start up to five in flight; the server takes four and refuses the fifth with a
    ``429`` (nginx ``limit_conn 4``, ``limit_conn_status 429``)."""
    host = _Host(limiter, clock)
    host.refill()
    assert len(host.in_flight) == 1  # slow start
    for _ in range(2):
        host.round()
    assert len(host.in_flight) == 4
    clock.advance(0.1)
    host.answer()
    host.refill()
    assert len(host.in_flight) == 5
    host.in_flight.insert(0, host.in_flight.pop())  # the fifth is refused
    host.answer(throttled=True)
    return host


def test_limiter_reads_a_429_at_a_connection_cap_as_concurrency_not_rate(clock):
    limiter = LocalLimiter(RateLimit(adaptive=True), clock=clock, workers=16)
    _capped_by_a_429(limiter, clock)
    snapshot = limiter.snapshot()
    assert snapshot.concurrency == (("h:80", 4),)
    assert snapshot.throttled == ()  # the rate is left alone
    # a 429 with nothing else in flight is still a rate
    assert limiter.try_acquire("other:80").granted
    clock.advance(0.01)
    limiter.release("other:80")
    limiter.record_response("other:80", throttled=True, started=clock.now - 0.01)
    assert [h for h, _ in limiter.snapshot().throttled] == ["other:80"]
    assert limiter.snapshot().concurrency == (("h:80", 4),)


def test_limiter_tells_the_concurrency_how_long_a_refused_probe_would_pause_the_host(clock):
    # Retry-After: 3 from the cap: a probe of a fifth would cost 3 s, so none for 300 s
    limiter = LocalLimiter(RateLimit(adaptive=True), clock=clock, workers=16)
    host = _capped_by_a_429(limiter, clock)
    limiter.pause_host("h:80", 3.0)
    until = clock.advance(3.0) + 250.0
    most = 0
    while clock.now < until:
        host.round()
        most = max(most, len(host.in_flight))
    assert most == 4


def test_a_lone_refusal_the_next_round_does_not_repeat_resumes_slow_start():
    # a flaky backend's random 503 while two were in flight: not a cap of one
    learned = _unlimited(16)
    learned.on_overload(now=0.01, started=0.0, in_flight=1)
    assert learned.cap == 1
    learned.on_success(now=0.2, started=0.1, in_flight=0)  # one at once works: more
    assert learned.slow_start and learned.cap == 2
    assert learned.cap_at(0.2 + 4 * SLOW_START_DOUBLING_S) is None  # the ceiling, soon


def test_a_lone_refusal_repeated_at_the_same_level_is_a_cap_and_holds():
    learned = _unlimited(16)
    learned.on_overload(now=0.01, started=0.0, in_flight=4)  # the fifth refused: suspicion
    learned.on_success(now=0.2, started=0.1, in_flight=3)  # four at once work: try five
    assert learned.slow_start and learned.cap == 5
    learned.on_overload(now=0.3, started=0.25, in_flight=4)  # the fifth refused again: a cap
    assert learned.cap == 4 and learned.learned
    held, _ = _held_for(learned, 0.4)
    assert held == pytest.approx(PROBE_S, abs=0.2)
