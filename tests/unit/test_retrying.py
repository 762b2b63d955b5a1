"""Retry-After parsing and the RetryPlanner's decisions after one attempt."""

from __future__ import annotations

import email.utils
import warnings

import pytest

from poolfetch.core.config import RetryPolicy
from poolfetch.core.errors import (
    BodyTooLargeError,
    ConnectError,
    ProtocolError,
    RedirectError,
    RequestTimeout,
    TransportError,
)
from poolfetch.core.models import AttemptOutcome
from poolfetch.core.retrying import RetryPlanner, parse_retry_after

NOW = 1_700_000_000.0


def _status(code: int, retry_after: str | None = None) -> AttemptOutcome:
    return AttemptOutcome(started=0.0, elapsed=0.01, status=code, retry_after=retry_after)


def _error(exc: Exception) -> AttemptOutcome:
    return AttemptOutcome(started=0.0, elapsed=0.01, error=exc)


def _planner(**policy) -> RetryPlanner:
    return RetryPlanner(RetryPolicy(**policy), wall_clock=lambda: NOW)


def _http_date(when: float) -> str:
    return email.utils.formatdate(when, usegmt=True)


# --- parse_retry_after ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("5", 5.0), (" 5 ", 5.0), ("0", 0.0), ("1.5", 1.5), ("120\t", 120.0)],
)
def test_delta_seconds(value, seconds):
    assert parse_retry_after(value, now=NOW) == seconds


def test_http_date_in_the_future():
    assert parse_retry_after(_http_date(NOW + 90), now=NOW) == pytest.approx(90.0)


def test_http_date_in_the_past_means_now():
    assert parse_retry_after(_http_date(NOW - 3600), now=NOW) == 0.0


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        "   ",
        "soon",
        "-1",
        "-0.5",
        "inf",
        "-inf",
        "nan",
        "Infinity",
        "1e400",
        "5 s",
        "0x10",
    ],
)
def test_garbage_negative_and_non_finite_give_no_hint(value):
    assert parse_retry_after(value, now=NOW) is None


def test_huge_numbers_are_parsed_not_crashed_on():
    assert parse_retry_after("1" + "0" * 30, now=NOW) == 1e30
    assert parse_retry_after("99999999999", now=NOW) == 99999999999.0


def test_non_ascii_digits_give_no_hint():
    assert parse_retry_after("\u00b2", now=NOW) is None


def test_asctime_http_date_is_accepted():
    # Sun Nov  6 08:49:37 1994 (GMT) is 784111777
    assert parse_retry_after("Sun Nov  6 08:49:37 1994", now=784111777.0 - 60) == 60.0


def test_planner_construction_raises_no_deprecation_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        RetryPlanner(RetryPolicy(backoff=0.5))


# --- which failures are retried ------------------------------------------------------------------


@pytest.mark.parametrize(
    "exc",
    [ConnectError("reset"), RequestTimeout("read timed out"), ProtocolError("short body")],
)
def test_transport_errors_are_retried(exc):
    assert isinstance(exc, TransportError)
    decision = _planner().decide(_error(exc), 1)
    assert decision.retry
    assert decision.error is None


@pytest.mark.parametrize(
    "exc",
    [
        BodyTooLargeError("body over max-bytes"),
        RedirectError("too many redirects"),
        ValueError("a bug"),
    ],
)
def test_other_errors_are_final(exc):
    decision = _planner().decide(_error(exc), 1)
    assert not decision.retry
    assert str(exc) in (decision.error or "")


@pytest.mark.parametrize("code", [429, 500, 502, 503, 504])
def test_retry_on_statuses_are_retried(code):
    assert _planner().decide(_status(code), 1).retry


@pytest.mark.parametrize("code", [400, 401, 403, 404, 410])
def test_other_error_statuses_are_final(code):
    decision = _planner().decide(_status(code), 1)
    assert not decision.retry
    assert decision.error == f"HTTP {code}"


def test_success_is_final_without_error():
    decision = _planner().decide(_status(200), 1)
    assert not decision.retry
    assert decision.error is None


def test_retry_on_is_configurable():
    planner = _planner(retry_on=frozenset({404}))
    assert planner.decide(_status(404), 1).retry
    assert not planner.decide(_status(500), 1).retry


def test_body_failure_after_a_status_uses_the_exception():
    outcome = AttemptOutcome(started=0.0, elapsed=0.01, status=200, error=ProtocolError("cut"))
    decision = _planner(retries=0).decide(outcome, 1)
    assert decision.error == "cut, after HTTP 200 headers"


# --- how many attempts ---------------------------------------------------------------------------


def test_stops_after_retries_plus_one_attempts_with_the_last_status():
    planner = _planner(retries=2)
    assert planner.decide(_status(503), 1).retry
    assert planner.decide(_status(503), 2).retry
    last = planner.decide(_status(503), 3)
    assert not last.retry
    assert last.error == "HTTP 503"


def test_stops_after_retries_plus_one_attempts_with_the_last_exception():
    planner = _planner(retries=1)
    assert planner.decide(_error(ConnectError("refused")), 1).retry
    last = planner.decide(_error(RequestTimeout("read timed out after 30 s")), 2)
    assert not last.retry
    assert last.error == "read timed out after 30 s"


def test_zero_retries_means_one_attempt():
    decision = _planner(retries=0).decide(_status(503), 1)
    assert not decision.retry
    assert decision.error == "HTTP 503"


# --- how long to wait ----------------------------------------------------------------------------


def test_backoff_grows_exponentially_with_jitter_and_is_capped():
    planner = _planner(retries=12, backoff=0.5, max_backoff=20.0)
    for n in range(1, 12):
        base = 0.5 * 2 ** (n - 1)
        for _ in range(20):
            wait = planner.decide(_status(500), n).wait
            assert min(base, 20.0) <= wait <= min(base + 0.5, 20.0)
    waits = {planner.decide(_status(500), 1).wait for _ in range(30)}
    assert len(waits) > 1  # there is jitter


def test_zero_backoff_retries_at_once():
    planner = _planner(backoff=0.0)
    assert planner.decide(_error(ConnectError("reset")), 1).wait == 0.0


# --- Retry-After and host pauses -----------------------------------------------------------------


@pytest.mark.parametrize("code", [429, 503])
def test_retry_after_pauses_the_host_and_delays_the_retry(code):
    decision = _planner().decide(_status(code, retry_after="7"), 1)
    assert decision.retry
    assert decision.pause_host == 7.0
    assert decision.wait >= 7.0


def test_retry_after_as_http_date_uses_the_wall_clock():
    decision = _planner().decide(_status(429, retry_after=_http_date(NOW + 42)), 1)
    assert decision.pause_host == pytest.approx(42.0)
    assert decision.wait >= 42.0 - 1e-6


def test_retry_after_equal_to_the_limit_is_honoured():
    decision = _planner(max_retry_after=300).decide(_status(429, retry_after="300"), 1)
    assert decision.retry
    assert decision.wait >= 300


@pytest.mark.parametrize("value", ["301", "1" + "0" * 30, "9" * 400])
def test_retry_after_longer_than_the_limit_fails_the_url(value):
    decision = _planner(max_retry_after=300).decide(_status(503, retry_after=value), 1)
    assert not decision.retry
    assert "max-retry-after" in (decision.error or "")


def test_throttle_on_the_last_attempt_still_pauses_the_host():
    decision = _planner(retries=1).decide(_status(429, retry_after="9"), 2)
    assert not decision.retry
    assert decision.error == "HTTP 429"
    assert decision.pause_host == 9.0


def test_429_without_retry_after_pauses_the_host_for_a_backoff():
    decision = _planner(backoff=0.5, max_backoff=60).decide(_status(429), 3)
    assert decision.retry
    assert decision.pause_host is not None
    assert 2.0 <= decision.pause_host <= 2.5


def test_503_without_retry_after_does_not_pause_the_host():
    decision = _planner().decide(_status(503), 1)
    assert decision.retry
    assert decision.pause_host is None


def test_garbage_retry_after_on_503_is_ignored():
    decision = _planner().decide(_status(503, retry_after="tomorrow-ish"), 1)
    assert decision.retry
    assert decision.pause_host is None


def test_retry_after_on_other_statuses_does_not_pause_the_host():
    decision = _planner().decide(_status(500, retry_after="30"), 1)
    assert decision.retry
    assert decision.pause_host is None


class _Clock:
    """A monotonic clock the test steps by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _host_planner(clock: _Clock) -> RetryPlanner:
    policy = RetryPolicy(backoff=0.5, max_backoff=60, retries=10)
    return RetryPlanner(policy, wall_clock=lambda: NOW, clock=clock)


def _episodes(planner: RetryPlanner, clock: _Clock, host: str, count: int) -> list[float]:
    """``count`` throttle episodes of ``host``: a first 429 each (attempt 1), waited out."""
    pauses = []
    for _ in range(count):
        pause = planner.decide(_status(429), 1, host).pause_host
        assert pause is not None
        pauses.append(pause)
        clock.now += pause  # the pause ran out: the next 429 is a new episode
    return pauses


def test_429s_without_retry_after_back_the_host_off_exponentially_across_urls():
    """Each URL sees its first 429 (attempt 1), yet the host's pause grows episode by episode."""
    clock = _Clock()
    pauses = _episodes(_host_planner(clock), clock, "h:80", 4)
    for n, pause in enumerate(pauses, start=1):
        base = 0.5 * 2 ** (n - 1)
        assert base <= pause <= base + 0.5, pauses


def test_429s_within_one_pause_are_one_episode():
    """A burst of answers to requests sent together does not escalate the pause."""
    clock = _Clock()
    planner = _host_planner(clock)
    first = planner.decide(_status(429), 1, "h:80").pause_host
    assert first is not None and first <= 1.0
    for _ in range(20):
        clock.now += 0.01
        pause = planner.decide(_status(429), 1, "h:80").pause_host
        assert pause is not None and pause <= 1.0


def test_a_clean_answer_ends_the_hosts_run_of_throttles():
    clock = _Clock()
    planner = _host_planner(clock)
    _episodes(planner, clock, "h:80", 3)
    planner.host_answered("h:80")
    pause = planner.decide(_status(429), 1, "h:80").pause_host
    assert pause is not None and pause <= 1.0  # back to the first step


def test_throttle_episodes_are_kept_per_host():
    clock = _Clock()
    planner = _host_planner(clock)
    _episodes(planner, clock, "a:80", 3)
    other = planner.decide(_status(429), 1, "b:80").pause_host
    assert other is not None and other <= 1.0
