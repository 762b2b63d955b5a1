"""Retry safety: POST/PATCH are retried only where the server cannot have acted on them."""

from __future__ import annotations

import socket

import pytest
import requests
import urllib3.exceptions

from poolfetch.core.config import RetryPolicy
from poolfetch.core.errors import ConnectError, NotSentError, ProtocolError, RequestTimeout
from poolfetch.core.models import AttemptOutcome
from poolfetch.core.request import RequestSpec
from poolfetch.core.retrying import RetryPlanner, server_cannot_have_acted
from poolfetch.core.wire_errors import map_exception


def _status(code: int) -> AttemptOutcome:
    return AttemptOutcome(started=0.0, elapsed=0.01, status=code)


def _error(exc: Exception) -> AttemptOutcome:
    return AttemptOutcome(started=0.0, elapsed=0.01, error=exc)


def _decide(outcome: AttemptOutcome, method: str, **policy: bool) -> tuple[bool, str | None]:
    planner = RetryPlanner(RetryPolicy(**policy), wall_clock=lambda: 0.0)
    decision = planner.decide(outcome, 1, "h:80", RequestSpec(method).idempotent)
    return decision.retry, decision.error


@pytest.mark.parametrize(
    "outcome",
    [
        _error(NotSentError("connection failed (refused)")),
        _error(NotSentError("connect timeout")),
        _status(429),
        _status(503),
    ],
)
@pytest.mark.parametrize("method", ["POST", "PATCH"])
def test_unsafe_methods_are_retried_where_the_server_cannot_have_acted(outcome, method):
    assert server_cannot_have_acted(outcome)
    assert _decide(outcome, method) == (True, None)


@pytest.mark.parametrize(
    ("outcome", "cause"),
    [
        (_error(ConnectError("connection failed (reset)")), "connection failed (reset)"),
        (_error(RequestTimeout("read timeout")), "read timeout"),
        (_error(ProtocolError("broken response")), "broken response"),
        (_status(500), "HTTP 500"),
        (_status(502), "HTTP 502"),
    ],
)
def test_a_post_that_may_have_reached_the_server_is_not_retried(outcome, cause):
    retry, error = _decide(outcome, "POST")
    assert not retry
    assert error is not None and error.startswith(cause)
    assert "not retried" in error and "--retry-unsafe" in error


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "HEAD"])
def test_idempotent_methods_are_retried_as_before(method):
    assert _decide(_status(500), method) == (True, None)
    assert _decide(_error(ConnectError("reset")), method) == (True, None)


def test_retry_unsafe_retries_a_post_like_any_request():
    assert _decide(_status(500), "POST", retry_unsafe=True) == (True, None)
    assert _decide(_error(RequestTimeout("read timeout")), "PATCH", retry_unsafe=True)[0]


def test_a_post_that_is_not_retryable_anyway_keeps_its_plain_error():
    assert _decide(_status(404), "POST") == (False, "HTTP 404")


def _wrapped(reason: Exception) -> requests.exceptions.ConnectionError:
    """What requests raises for a failed connection: its error around urllib3's MaxRetryError."""
    pool_error = urllib3.exceptions.MaxRetryError(None, "/", reason)  # type: ignore[arg-type]
    return requests.exceptions.ConnectionError(pool_error)


def test_refused_and_dns_failures_are_not_sent_a_reset_is_not_known_to_be():
    refused = urllib3.exceptions.NewConnectionError(None, "Connection refused")  # type: ignore[arg-type]
    assert isinstance(map_exception(_wrapped(refused)), NotSentError)
    dns = urllib3.exceptions.NameResolutionError("nohost", None, socket.gaierror(-2, "unknown"))  # type: ignore[arg-type]
    assert isinstance(map_exception(_wrapped(dns)), NotSentError)
    timeout = requests.exceptions.ConnectTimeout(
        urllib3.exceptions.ConnectTimeoutError(None, "timed out")
    )
    assert isinstance(map_exception(timeout), NotSentError)
    reset = map_exception(
        _wrapped(urllib3.exceptions.ProtocolError("aborted", ConnectionResetError(104, "reset")))
    )
    assert isinstance(reset, ConnectError) and not isinstance(reset, NotSentError)
