"""The practice server's per-client limiters, stepped on a fake clock (no server, no sleeps)."""

from __future__ import annotations

import itertools
from collections import deque

import pytest

from poolfetch.core.practice_limits import ServerLimiter, ServerLimits, Verdict

A = "127.0.0.1"
B = "127.0.0.2"
WALL = 1_800_000_000.0


def _limiter(clock, **fields) -> ServerLimiter:
    return ServerLimiter(ServerLimits(**fields), clock=clock, wall=lambda: WALL + clock.now)


def _headers(verdict: Verdict) -> dict[str, str]:
    return dict(verdict.headers)


def _accepted_times(limiter: ServerLimiter, clock, seconds: float, step: float) -> list[float]:
    """Ask every ``step`` seconds for ``seconds`` (each request answered at once)."""
    times = []
    end = clock.now + seconds
    while clock.now < end - 1e-9:
        verdict = limiter.enter(A)
        if not verdict.refused:
            times.append(clock.now)
            limiter.leave(verdict)
        clock.advance(step)
    return times


def _max_in_window(times: list[float], window: float) -> int:
    best = 0
    recent: deque[float] = deque()
    for t in times:
        recent.append(t)
        while recent[0] <= t - window + 1e-9:
            recent.popleft()
        best = max(best, len(recent))
    return best


# --- configuration ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"conn_limit": 0}, "conn_limit"),
        ({"conn_status": 500}, "conn_status"),
        ({"delay_ms": -1}, "delay_ms"),
        ({"window": "sliding", "window_limit": 1}, "window"),
        ({"window": "fixed"}, "window_limit"),
        ({"window_s": 0}, "window_s"),
        ({"headers": "github"}, "headers"),
        ({"bucket_rate": 0}, "bucket_rate"),
    ],
)
def test_bad_limits_are_refused_with_the_field_named(fields, words):
    with pytest.raises(ValueError, match=words):
        ServerLimits(**fields)


def test_nothing_is_active_by_default():
    assert not ServerLimits().active
    assert ServerLimits(delay_ms=100).active


# --- connection cap --------------------------------------------------------------------------


def test_conn_cap_refuses_beyond_n_being_served_with_a_bare_503(clock):
    limiter = _limiter(clock, conn_limit=2)
    first, second, third = (limiter.enter(A) for _ in range(3))
    assert not first.refused
    assert not second.refused
    assert third.status == 503
    assert third.headers == ()  # nginx's default answer: no Retry-After
    limiter.leave(first)
    fourth = limiter.enter(A)
    assert not fourth.refused
    stats = limiter.stats()
    assert stats["limit_accepted"] == 3
    assert stats["limit_refused_conn"] == 1
    assert stats["limit_peak_in_flight"] == 2


def test_conn_cap_is_per_client_address(clock):
    limiter = _limiter(clock, conn_limit=1)
    assert not limiter.enter(A).refused
    assert not limiter.enter(B).refused
    assert limiter.enter(A).refused


def test_conn_cap_429_carries_retry_after_1(clock):
    limiter = _limiter(clock, conn_limit=1, conn_status=429)
    limiter.enter(A)
    refused = limiter.enter(A)
    assert refused.status == 429
    assert _headers(refused) == {"Retry-After": "1"}


def test_leave_is_idempotent(clock):
    limiter = _limiter(clock, conn_limit=1)
    first = limiter.enter(A)
    limiter.leave(first)
    limiter.leave(first)  # a second leave must not free someone else's slot
    assert not limiter.enter(A).refused
    assert limiter.enter(A).refused


def test_a_request_the_cap_refuses_does_not_spend_the_window(clock):
    limiter = _limiter(clock, conn_limit=1, window="fixed", window_limit=2, window_s=10)
    held = limiter.enter(A)
    assert limiter.enter(A).status == 503
    limiter.leave(held)
    assert not limiter.enter(A).refused  # the window still had its second slot


# --- fixed window ----------------------------------------------------------------------------


def test_fixed_window_accepts_limit_then_refuses_until_it_ends(clock):
    limiter = _limiter(clock, window="fixed", window_limit=3, window_s=10, headers="x-ratelimit")
    start = clock.now
    answers = [limiter.enter(A) for _ in range(3)]
    assert [_headers(v)["X-RateLimit-Remaining"] for v in answers] == ["2", "1", "0"]
    clock.advance(4.2)
    refused = limiter.enter(A)
    assert refused.status == 429
    assert _headers(refused) == {
        "X-RateLimit-Limit": "3",
        "X-RateLimit-Remaining": "0",
        "X-RateLimit-Reset": "6",  # 5.8 s left, rounded up: a client waiting for it is not early
    }
    assert "Retry-After" not in _headers(refused)
    clock.set(start + 10)
    assert _headers(limiter.enter(A))["X-RateLimit-Remaining"] == "2"  # a new window


def test_fixed_window_never_accepts_more_than_the_limit_in_one_window(clock):
    limiter = _limiter(clock, window="fixed", window_limit=5, window_s=1)
    start = clock.now
    times = _accepted_times(limiter, clock, seconds=10, step=0.03)
    per_window: dict[int, int] = {}
    for t in times:
        index = int((t - start) // 1.0 + 1e-9)
        per_window[index] = per_window.get(index, 0) + 1
    assert max(per_window.values()) == 5
    assert len(times) == 50  # and it does accept the whole quota of every window
    assert limiter.stats()["limit_refused_window"] == 334 - 50


def test_fixed_window_retry_after_says_when_it_ends(clock):
    limiter = _limiter(clock, window="fixed", window_limit=1, window_s=5, retry_after=True)
    limiter.enter(A)
    clock.advance(1.5)
    refused = limiter.enter(A)
    assert _headers(refused) == {"Retry-After": "4"}  # bare dialect: Retry-After only


def test_windows_are_per_client_address(clock):
    limiter = _limiter(clock, window="fixed", window_limit=1, window_s=5)
    assert not limiter.enter(A).refused
    assert not limiter.enter(B).refused
    assert limiter.enter(A).refused


# --- moving window ---------------------------------------------------------------------------


def test_moving_window_never_accepts_more_than_the_limit_in_any_window(clock):
    limiter = _limiter(clock, window="moving", window_limit=5, window_s=1)
    times = _accepted_times(limiter, clock, seconds=10, step=0.03)
    assert _max_in_window(times, 1.0) == 5
    assert len(times) >= 45


def test_moving_window_frees_a_slot_when_the_oldest_request_leaves_it(clock):
    limiter = _limiter(clock, window="moving", window_limit=2, window_s=10, headers="ratelimit")
    limiter.enter(A)
    clock.advance(3)
    second = limiter.enter(A)
    assert _headers(second) == {
        "RateLimit-Limit": "2",
        "RateLimit-Remaining": "0",
        "RateLimit-Reset": "7",  # the first request leaves the window in 7 s
    }
    clock.advance(6.9)
    assert limiter.enter(A).refused
    clock.advance(0.1)
    third = limiter.enter(A)
    assert not third.refused
    assert _headers(third)["RateLimit-Reset"] == "3"  # now the second one is the oldest


def test_refused_requests_do_not_count_in_a_moving_window(clock):
    limiter = _limiter(clock, window="moving", window_limit=1, window_s=1)
    limiter.enter(A)
    for _ in range(5):
        clock.advance(0.19)
        assert limiter.enter(A).refused
    clock.advance(0.05)  # 1.0 s after the accepted one
    assert not limiter.enter(A).refused


@pytest.mark.parametrize("window", ["fixed", "moving"])
def test_a_window_slot_frees_exactly_one_window_after_despite_float_steps(clock, window):
    limiter = _limiter(clock, window=window, window_limit=1, window_s=1)
    limiter.enter(A)
    for _ in range(3):
        clock.advance(0.3)
    clock.advance(0.1)  # 1000.9999999999999 on the float clock: one window after, all the same
    assert not limiter.enter(A).refused


# --- header dialects -------------------------------------------------------------------------


def _first_answer(clock, dialect: str, **extra) -> dict[str, str]:
    limiter = _limiter(
        clock, window="fixed", window_limit=10, window_s=60, headers=dialect, **extra
    )
    limiter.enter(A)
    clock.advance(0.5)
    return _headers(limiter.enter(A))


def test_dialect_x_ratelimit_reset_as_unix_time(clock):
    start = clock.now
    limiter = ServerLimiter(
        ServerLimits(window="fixed", window_limit=10, window_s=60, headers="x-ratelimit-unix"),
        clock=clock,
        wall=lambda: 1_800_000_000.25 + (clock.now - start),
    )
    limiter.enter(A)
    clock.advance(0.5)
    headers = _headers(limiter.enter(A))
    # the window ends at wall time 1_800_000_060.25, announced rounded up
    assert headers["X-RateLimit-Reset"] == "1800000061"
    assert headers["X-RateLimit-Remaining"] == "8"


def test_dialect_ietf_structured_fields(clock):
    assert _first_answer(clock, "ietf") == {
        "RateLimit": '"default";r=8;t=60',
        "RateLimit-Policy": '"default";q=10;w=60',
    }


def test_dialect_reset_after_in_milliseconds(clock):
    assert _first_answer(clock, "reset-after") == {
        "X-RateLimit-Limit": "10",
        "X-RateLimit-Remaining": "8",
        "X-RateLimit-Reset-After": "59.500",
    }


def test_dialect_none_announces_nothing(clock):
    assert _first_answer(clock, "none") == {}


def test_headers_and_retry_after_together_on_a_refusal(clock):
    limiter = _limiter(
        clock, window="fixed", window_limit=1, window_s=3, headers="ietf", retry_after=True
    )
    limiter.enter(A)
    clock.advance(0.25)
    assert _headers(limiter.enter(A)) == {
        "RateLimit": '"default";r=0;t=3',
        "RateLimit-Policy": '"default";q=1;w=3',
        "Retry-After": "3",
    }


# --- token bucket without burst --------------------------------------------------------------


def test_bucket_without_burst_refuses_anything_closer_than_one_over_rate(clock):
    limiter = _limiter(clock, bucket_rate=10)
    assert not limiter.enter(A).refused
    clock.advance(0.099)
    refused = limiter.enter(A)
    assert refused.status == 429
    assert _headers(refused) == {"Retry-After": "1"}
    clock.advance(0.001)  # 0.1 s after the accepted one, not after the refused one
    assert not limiter.enter(A).refused


def test_bucket_without_burst_holds_the_rate_exactly(clock):
    limiter = _limiter(clock, bucket_rate=20)
    times = _accepted_times(limiter, clock, seconds=5, step=0.01)
    assert len(times) == 100
    assert min(b - a for a, b in itertools.pairwise(times)) >= 0.05 - 1e-9
    assert limiter.stats()["limit_refused_bucket"] == 500 - 100


def test_decisions_log_what_was_accepted_and_why_others_were_refused(clock):
    limiter = _limiter(clock, bucket_rate=1, conn_limit=1)
    held = limiter.enter(A)
    clock.advance(2)
    assert limiter.enter(A).status == 503
    limiter.leave(held)
    assert not limiter.enter(A).refused  # the refused one did not count as the last accepted
    clock.advance(0.5)
    assert limiter.enter(A).status == 429
    assert [(d.accepted, d.reason) for d in limiter.decisions()] == [
        (True, ""),
        (False, "conn"),
        (True, ""),
        (False, "bucket"),
    ]
