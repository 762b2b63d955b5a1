"""The exception table: TLS failures no retry can mend are final and name the host; the
exchange breaking stays retryable; a body that cannot be decoded names its coding."""

from __future__ import annotations

import http.client
import socket
import ssl
from typing import Any

import pytest
import requests
import urllib3.exceptions

from poolfetch.core import wire_errors
from poolfetch.core.codings import check_codings
from poolfetch.core.config import RetryPolicy
from poolfetch.core.errors import (
    CertificateError,
    ConnectError,
    ConnectionRefused,
    ConnectionReset,
    ContentCodingError,
    FetchError,
    NotSentError,
    ProtocolError,
    RedirectError,
    RequestTimeout,
    TlsError,
    TransportError,
)
from poolfetch.core.models import AttemptOutcome
from poolfetch.core.retrying import RetryPlanner
from poolfetch.core.wire_errors import map_exception

HOST = "example.test:443"


def _as_requests_raises(root: BaseException) -> requests.exceptions.SSLError:
    """``root`` wrapped the way requests' adapter raises a handshake failure."""
    pool = urllib3.HTTPSConnectionPool("example.test", 443)
    inner = urllib3.exceptions.SSLError(root)
    return requests.exceptions.SSLError(urllib3.exceptions.MaxRetryError(pool, "/", inner))


def _verify_failed(message: str) -> ssl.SSLCertVerificationError:
    error = ssl.SSLCertVerificationError(
        1, f"[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: {message} (_ssl.c:1000)"
    )
    error.verify_message = message
    return error


def _ssl_error(reason: str) -> ssl.SSLError:
    return ssl.SSLError(1, f"[SSL: {reason}] {reason.lower().replace('_', ' ')} (_ssl.c:1000)")


@pytest.mark.parametrize(
    "message",
    [
        "unable to get local issuer certificate",
        "self-signed certificate",
        "certificate has expired",
        "Hostname mismatch, certificate is not valid for 'example.test'.",
    ],
)
def test_a_certificate_failure_is_final_and_names_certificate_and_host(message: str) -> None:
    error = map_exception(_as_requests_raises(_verify_failed(message)), HOST)
    assert isinstance(error, CertificateError)
    assert not isinstance(error, TransportError)
    assert "certificate" in str(error) and HOST in str(error) and message in str(error)


@pytest.mark.parametrize(
    ("reason", "phrase"),
    [
        ("WRONG_VERSION_NUMBER", "plain-HTTP port"),
        ("TLSV1_ALERT_PROTOCOL_VERSION", "TLSV1_ALERT_PROTOCOL_VERSION"),
        ("SSLV3_ALERT_HANDSHAKE_FAILURE", "SSLV3_ALERT_HANDSHAKE_FAILURE"),
        ("NO_SHARED_CIPHER", "NO_SHARED_CIPHER"),
    ],
)
def test_handshake_failures_a_retry_would_repeat_are_final(reason: str, phrase: str) -> None:
    error = map_exception(_as_requests_raises(_ssl_error(reason)), HOST)
    assert type(error) is TlsError
    assert phrase in str(error) and HOST in str(error)


@pytest.mark.parametrize(
    "reason",
    ["TLSV1_ALERT_UNKNOWN_CA", "SSLV3_ALERT_BAD_CERTIFICATE", "TLSV1_ALERT_CERTIFICATE_REQUIRED"],
)
def test_the_server_refusing_the_client_certificate_is_a_certificate_error(reason: str) -> None:
    error = map_exception(_as_requests_raises(_ssl_error(reason)), HOST)
    assert isinstance(error, CertificateError)
    assert "client certificate" in str(error) and reason in str(error)


def test_tls_trouble_a_retry_can_mend_stays_retryable() -> None:
    eof = ssl.SSLEOFError(8, "[SSL: UNEXPECTED_EOF_WHILE_READING] EOF occurred (_ssl.c:1000)")
    error = map_exception(_as_requests_raises(eof), HOST)
    assert isinstance(error, ConnectError)
    assert HOST in str(error)


def test_the_table_keeps_the_rest_of_the_mapping() -> None:
    pool = urllib3.HTTPConnectionPool("example.test", 80)
    refused = requests.exceptions.ConnectionError(
        urllib3.exceptions.MaxRetryError(
            pool, "/", urllib3.exceptions.NewConnectionError(pool, "Connection refused")
        )
    )
    assert isinstance(map_exception(refused), ConnectError)
    # a connect timeout could not connect: nothing was sent (a POST may be retried)
    timed_out = map_exception(requests.exceptions.ConnectTimeout("connect timed out"))
    assert isinstance(timed_out, NotSentError) and "connect timeout" in str(timed_out)
    assert isinstance(map_exception(TimeoutError("timed out")), RequestTimeout)
    assert isinstance(
        map_exception(urllib3.exceptions.ProtocolError("Connection broken")), ProtocolError
    )
    proxy = requests.exceptions.ProxyError(OSError("Tunnel connection failed: 403 Forbidden"))
    mapped = map_exception(proxy)
    assert isinstance(mapped, ConnectError) and "proxy" in str(mapped)


def test_a_body_that_does_not_decode_is_final_and_names_the_coding() -> None:
    decode = urllib3.exceptions.DecodeError(
        "Received response with content-encoding: br, but failed to decode it.",
        ValueError("bad data"),
    )
    error = map_exception(decode, HOST)
    assert isinstance(error, ContentCodingError)
    assert "content-encoding: br" in str(error)


@pytest.mark.parametrize("header", ["xz", "gzip, compress", "x-custom"])
def test_a_coding_urllib3_cannot_decode_is_refused_by_name(header: str) -> None:
    with pytest.raises(ContentCodingError) as caught:
        check_codings(header)
    assert header.rsplit(", ", maxsplit=1)[-1] in str(caught.value)


@pytest.mark.parametrize(
    "header",
    [None, "", "gzip", "x-gzip", "deflate", "br", "zstd", "identity", "GZIP", "zstd, gzip"],
)
def test_codings_urllib3_decodes_pass(header: str | None) -> None:
    check_codings(header)


def test_a_final_tls_error_is_not_retried() -> None:
    planner = RetryPlanner(RetryPolicy(retries=3))
    for error in (
        map_exception(_as_requests_raises(_verify_failed("self-signed certificate")), HOST),
        map_exception(_as_requests_raises(_ssl_error("WRONG_VERSION_NUMBER")), HOST),
    ):
        outcome = AttemptOutcome(started=0.0, elapsed=0.01, error=error)
        decision = planner.decide(outcome, attempt_number=1, host=HOST)
        assert decision.retry is False
        assert decision.error == str(error)
    reset = AttemptOutcome(started=0.0, elapsed=0.01, error=ConnectError("connection reset"))
    assert planner.decide(reset, attempt_number=1, host=HOST).retry is True


def test_a_connection_refused_or_reset_by_the_server_is_told_apart() -> None:
    pool = urllib3.HTTPConnectionPool("example.test", 80)
    connecting = urllib3.exceptions.NewConnectionError(pool, "Connection refused")
    connecting.__cause__ = ConnectionRefusedError(111, "Connection refused")
    refused = map_exception(
        requests.exceptions.ConnectionError(urllib3.exceptions.MaxRetryError(pool, "/", connecting))
    )
    assert isinstance(refused, ConnectionRefused) and isinstance(refused, NotSentError)
    reset = map_exception(
        requests.exceptions.ConnectionError(
            urllib3.exceptions.ProtocolError("Connection aborted.", ConnectionResetError(104, "x"))
        )
    )
    assert isinstance(reset, ConnectionReset) and not isinstance(reset, NotSentError)
    assert "connection failed" in str(refused) and "connection failed" in str(reset)
    dns = requests.exceptions.ConnectionError(OSError("Name or service not known"))
    assert not isinstance(map_exception(dns), ConnectionRefused | ConnectionReset)


def _pool() -> urllib3.HTTPConnectionPool:
    return urllib3.HTTPConnectionPool("example.test", 80)


def _via_requests(inner: BaseException) -> requests.exceptions.ConnectionError:
    """``inner`` raised while connecting or sending, as requests' adapter wraps it."""
    return requests.exceptions.ConnectionError(
        urllib3.exceptions.MaxRetryError(_pool(), "/", inner)
    )


def _refused() -> urllib3.exceptions.NewConnectionError:
    error = urllib3.exceptions.NewConnectionError(_pool(), "Connection refused")
    error.__cause__ = ConnectionRefusedError(111, "Connection refused")
    return error


def _not_resolved() -> urllib3.exceptions.NewConnectionError:
    error = urllib3.exceptions.NewConnectionError(_pool(), "Failed to resolve 'example.test'")
    error.__cause__ = socket.gaierror(-2, "Name or service not known")
    return error


#: (raised, the error it must become, a phrase of its message): at least one case per row of
#: ``EXCEPTION_TABLE`` (``test_every_row_of_the_table_has_a_case`` checks that).
CASES: list[tuple[BaseException, type[FetchError], str]] = [
    (
        _as_requests_raises(_verify_failed("self-signed certificate")),
        CertificateError,
        "not trusted",
    ),
    (_as_requests_raises(_ssl_error("NO_SHARED_CIPHER")), TlsError, "NO_SHARED_CIPHER"),
    (requests.exceptions.ConnectTimeout("connect timed out"), NotSentError, "connect timeout"),
    (requests.exceptions.ReadTimeout("read timed out"), RequestTimeout, "read timeout"),
    (
        urllib3.exceptions.ReadTimeoutError(_pool(), "/", "timed out"),
        RequestTimeout,
        "read timeout",
    ),
    (TimeoutError("timed out"), RequestTimeout, "read timeout"),
    (
        requests.exceptions.InvalidSchema("No connection adapters for 'ftp://x/'"),
        RedirectError,
        "does not fetch",
    ),
    (
        requests.exceptions.MissingSchema("Invalid URL 'x': No scheme"),
        RedirectError,
        "does not fetch",
    ),
    (
        requests.exceptions.ContentDecodingError(
            urllib3.exceptions.DecodeError("content-encoding: gzip, but failed", ValueError("x"))
        ),
        ContentCodingError,
        "gzip",
    ),
    (
        requests.exceptions.ChunkedEncodingError("Connection broken: IncompleteRead(3 bytes read)"),
        ProtocolError,
        "broken response",
    ),
    (http.client.IncompleteRead(b"abc", 10), ProtocolError, "broken response"),
    (
        requests.exceptions.ProxyError(OSError("Tunnel connection failed: 403")),
        ConnectError,
        "proxy failed",
    ),
    # a connection closed without an answer (a stale keep-alive one too): broken, not a reset
    (
        requests.exceptions.ConnectionError(
            urllib3.exceptions.ProtocolError(
                "Connection aborted.", http.client.RemoteDisconnected("closed without response")
            )
        ),
        ProtocolError,
        "broken response",
    ),
    (_via_requests(_refused()), ConnectionRefused, "Connection refused"),
    (_via_requests(_not_resolved()), NotSentError, "connection failed"),
    (
        requests.exceptions.ConnectionError(
            urllib3.exceptions.ProtocolError(
                "Connection aborted.", ConnectionResetError(104, "Connection reset by peer")
            )
        ),
        ConnectionReset,
        "Connection reset by peer",
    ),
    (BrokenPipeError(32, "Broken pipe"), ConnectError, "connection failed (BrokenPipeError"),
    (
        requests.exceptions.InvalidHeader("Invalid leading whitespace in header value"),
        FetchError,
        "invalid request",
    ),
    (OSError(101, "Network is unreachable"), ConnectError, "network error"),
    (ValueError("Invalid IPv6 URL"), RedirectError, "redirect to an invalid URL"),
    (RuntimeError("boom"), FetchError, "unexpected error (RuntimeError: boom)"),
]


@pytest.mark.parametrize(("raised", "becomes", "phrase"), CASES)
def test_each_exception_becomes_its_error(
    raised: BaseException, becomes: type[FetchError], phrase: str
) -> None:
    error = map_exception(raised, HOST)
    assert type(error) is becomes, f"{raised!r} became {type(error).__name__}: {error}"
    assert phrase in str(error)


def test_every_row_of_the_table_has_a_case(monkeypatch: pytest.MonkeyPatch) -> None:
    used: set[int] = set()

    def noting(index: int, make: Any) -> Any:
        def made(*args: Any) -> FetchError:
            used.add(index)
            return make(*args)  # type: ignore[no-any-return]

        return made

    table = tuple(
        rule._replace(make=noting(i, rule.make))
        for i, rule in enumerate(wire_errors.EXCEPTION_TABLE)
    )
    monkeypatch.setattr(wire_errors, "EXCEPTION_TABLE", table)
    for raised, _, _ in CASES:
        map_exception(raised, HOST)
    assert sorted(set(range(len(table))) - used) == []


def test_a_poolfetch_error_passes_through_unchanged() -> None:
    error = RequestTimeout("read timeout (already mapped)")
    assert map_exception(error) is error


def test_messages_drop_pool_details_and_mask_passwords_and_control_characters() -> None:
    pooled = map_exception(
        requests.exceptions.ConnectionError(
            "HTTPConnectionPool(host='example.test', port=80): Max retries exceeded"
        )
    )
    assert "Pool(" not in str(pooled) and "Max retries exceeded" in str(pooled)
    location = map_exception(ValueError("bad URL http://user:s3cret@example.test/\x1b[2J"))
    assert "s3cret" not in str(location)
    assert "\x1b" not in str(location) and "\\x1b[2J" in str(location)
    assert str(map_exception(OSError(5, "x" * 1000))).count("x") <= 300
