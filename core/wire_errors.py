"""The one translation of ``requests``/``urllib3``/socket/ssl exceptions into the poolfetch
error tree: a table, most specific row first (httpx's ``HTTPCORE_EXC_MAP`` is the model).

Messages name the root cause's class and say what happened, without the URL (the record carries
it), without urllib3's pool details, and with server-supplied text made safe for a terminal.
Where a retry cannot help (a certificate that is not trusted, TLS spoken to a plain-HTTP port,
no protocol in common, a content coding that cannot be decoded) the error is final; the
exchange breaking (refused, reset, timed out, cut short) is a retryable ``TransportError``.
"""

from __future__ import annotations

import http.client
import re
import socket
import ssl
from collections.abc import Callable, Iterator
from typing import NamedTuple

import requests
import urllib3.exceptions

from poolfetch.core.codings import decoding_failed
from poolfetch.core.errors import (
    CertificateError,
    ConnectError,
    FetchError,
    NotSentError,
    ProtocolError,
    RedirectError,
    RequestTimeout,
    TlsError,
)
from poolfetch.core.redact import redact_text


class _Rule(NamedTuple):
    """One row of the exception table: the raised type(s); optionally a type that must be
    somewhere in the chain of causes (the raised exception down to the root cause); and the
    poolfetch error they become, made from the raised exception, the matched cause (the root
    cause when the row names none), the host and the root's "Class: message" text."""

    raised: type[BaseException] | tuple[type[BaseException], ...]
    cause: type[BaseException] | tuple[type[BaseException], ...] | None
    make: Callable[[BaseException, BaseException, str, str], FetchError]


#: OpenSSL reasons of a handshake that fails the same way however often it is tried: TLS
#: spoken to a plain-HTTP port, no protocol or cipher in common, the server refusing our
#: client certificate (or asking for one that was not given).
FINAL_TLS_REASONS = frozenset(
    {
        "WRONG_VERSION_NUMBER",
        "UNKNOWN_PROTOCOL",
        "PACKET_LENGTH_TOO_LONG",
        "HTTP_REQUEST",
        "UNSUPPORTED_PROTOCOL",
        "NO_PROTOCOLS_AVAILABLE",
        "NO_SHARED_CIPHER",
        "NO_CIPHERS_AVAILABLE",
        "SSLV3_ALERT_HANDSHAKE_FAILURE",
        "TLSV1_ALERT_PROTOCOL_VERSION",
        "TLSV1_ALERT_INSUFFICIENT_SECURITY",
        "TLSV1_ALERT_ACCESS_DENIED",
        "TLSV1_UNRECOGNIZED_NAME",
        "TLSV1_ALERT_NO_APPLICATION_PROTOCOL",
        "UNSAFE_LEGACY_RENEGOTIATION_DISABLED",
        "DH_KEY_TOO_SMALL",
        "EE_KEY_TOO_SMALL",
        "CA_MD_TOO_WEAK",
    }
)
#: Alerts by which the server refuses the client certificate (or the lack of one).
CLIENT_CERT_REASONS = frozenset(
    {
        "TLSV1_ALERT_UNKNOWN_CA",
        "SSLV3_ALERT_BAD_CERTIFICATE",
        "SSLV3_ALERT_CERTIFICATE_UNKNOWN",
        "SSLV3_ALERT_CERTIFICATE_EXPIRED",
        "SSLV3_ALERT_CERTIFICATE_REVOKED",
        "SSLV3_ALERT_UNSUPPORTED_CERTIFICATE",
        "TLSV1_ALERT_CERTIFICATE_REQUIRED",
    }
)
#: OpenSSL's "[SSL: REASON] text" form, for an SSLError that lost its ``reason`` attribute.
_SSL_REASON = re.compile(r"\[SSL: ([A-Z0-9_]+)\]")
_PLAIN_HTTP_HINT = {"WRONG_VERSION_NUMBER", "UNKNOWN_PROTOCOL", "PACKET_LENGTH_TOO_LONG"}


def _certificate(exc: BaseException, cause: BaseException, host: str, detail: str) -> FetchError:
    message = getattr(cause, "verify_message", None) or short_text(cause)
    return CertificateError(f"TLS certificate of {host} not trusted ({safe_text(message)})")


def _tls(exc: BaseException, cause: BaseException, host: str, detail: str) -> FetchError:
    reason = getattr(cause, "reason", None)
    if not isinstance(reason, str):
        found = _SSL_REASON.search(str(cause))
        reason = found.group(1) if found else None
    if reason in CLIENT_CERT_REASONS:
        return CertificateError(f"{host} refused the client certificate (TLS alert {reason})")
    if reason in FINAL_TLS_REASONS:
        hint = " (is it a plain-HTTP port?)" if reason in _PLAIN_HTTP_HINT else ""
        return TlsError(f"TLS handshake with {host} failed: {reason}{hint}")
    return ConnectError(f"TLS error with {host} ({detail})")  # an EOF, a reset: retried


def _fixed(
    error: type[FetchError], text: str
) -> Callable[[BaseException, BaseException, str, str], FetchError]:
    """A row whose error is ``error(text)``, ``{detail}`` being the root cause's text."""
    return lambda exc, cause, host, detail: error(text.format(detail=detail))


def _decoding(exc: BaseException, cause: BaseException, host: str, detail: str) -> FetchError:
    decode = next((e for e in _chain(exc) if isinstance(e, urllib3.exceptions.DecodeError)), exc)
    return decoding_failed(short_text(decode))


def _redirect_schema(
    exc: BaseException, cause: BaseException, host: str, detail: str
) -> FetchError:
    return RedirectError(f"redirect to a URL poolfetch does not fetch: {short_text(exc)}")


_CONNECTION = (requests.exceptions.ConnectionError, ConnectionError)
_NOT_SENT = (urllib3.exceptions.NewConnectionError, urllib3.exceptions.ConnectTimeoutError)
_BROKEN = (
    requests.exceptions.ChunkedEncodingError,
    urllib3.exceptions.ProtocolError,
    http.client.HTTPException,
)

#: ``requests``/``urllib3``/socket exceptions → the poolfetch tree, most specific first (the
#: first row whose type matches the exception, and whose cause, where it names one, is in the
#: chain of causes, wins).
EXCEPTION_TABLE: tuple[_Rule, ...] = (
    _Rule(Exception, ssl.SSLCertVerificationError, _certificate),
    _Rule(Exception, ssl.SSLError, _tls),
    _Rule(
        requests.exceptions.ConnectTimeout,
        None,
        _fixed(NotSentError, "connect timeout ({detail})"),
    ),
    _Rule(
        (
            requests.exceptions.ReadTimeout,
            urllib3.exceptions.ReadTimeoutError,
            socket.timeout,
            TimeoutError,
        ),
        None,
        _fixed(RequestTimeout, "read timeout ({detail})"),
    ),
    _Rule(
        (requests.exceptions.InvalidSchema, requests.exceptions.MissingSchema),
        None,
        _redirect_schema,
    ),
    _Rule(
        (requests.exceptions.ContentDecodingError, urllib3.exceptions.DecodeError), None, _decoding
    ),
    _Rule(_BROKEN, None, _fixed(ProtocolError, "broken response ({detail})")),
    _Rule(requests.exceptions.ProxyError, None, _fixed(ConnectError, "proxy failed ({detail})")),
    _Rule(
        _CONNECTION, http.client.HTTPException, _fixed(ProtocolError, "broken response ({detail})")
    ),
    # refused, unreachable, no such name, connect timeout: raised while connecting, before a
    # byte of the request was written, so the server cannot have acted on it (a POST may retry)
    _Rule(_CONNECTION, _NOT_SENT, _fixed(NotSentError, "connection failed ({detail})")),
    _Rule(_CONNECTION, None, _fixed(ConnectError, "connection failed ({detail})")),
    _Rule(
        (requests.exceptions.InvalidURL, requests.exceptions.InvalidHeader),
        None,
        _fixed(FetchError, "invalid request ({detail})"),
    ),
    _Rule(OSError, None, _fixed(ConnectError, "network error ({detail})")),
    # the URL itself was checked on input: a ValueError here comes from a bad Location
    _Rule(ValueError, None, _fixed(RedirectError, "redirect to an invalid URL ({detail})")),
)


def map_exception(exc: BaseException, host: str | None = None) -> FetchError:
    """Translate a ``requests``/``urllib3``/socket exception into the poolfetch error tree.

    The message names the exception class of the root cause and says what happened, without
    the URL (the record carries it) and without urllib3's pool details; TLS errors name the
    ``host``. Certificate and handshake failures that a retry would repeat are final
    (``TlsError``), other TLS trouble (an EOF, a reset mid-handshake) is a retryable
    ``ConnectError``.
    """
    if isinstance(exc, FetchError):
        return exc
    chain = list(_chain(exc))
    root = chain[-1]
    detail = f"{type(root).__name__}: {short_text(root)}"
    shown_host = host or "the server"
    for rule in EXCEPTION_TABLE:
        if not isinstance(exc, rule.raised):
            continue
        if rule.cause is None:
            return rule.make(exc, root, shown_host, detail)
        cause = next((e for e in chain if isinstance(e, rule.cause)), None)
        if cause is not None:
            return rule.make(exc, cause, shown_host, detail)
    return FetchError(f"unexpected error ({type(exc).__name__}: {short_text(exc)})")


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and the exceptions nested in it, outermost first (``root_cause`` is the last)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = _nested(current)


def root_cause(exc: BaseException) -> BaseException:
    *_, root = _chain(exc)
    return root


def _nested(exc: BaseException) -> BaseException | None:
    reason = getattr(exc, "reason", None)
    if isinstance(reason, BaseException):
        return reason
    for arg in exc.args:
        if isinstance(arg, BaseException):
            return arg
    return exc.__cause__ or None


#: Control characters in server-supplied text (status lines, Location headers) are shown
#: escaped, so an error message can never carry a terminal escape sequence to stderr.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def short_text(exc: BaseException) -> str:
    text = str(exc)
    if "): " in text and "Pool(" in text:  # urllib3 "HTTPConnectionPool(host=…): msg"
        text = text.split("): ", 1)[1]
    if isinstance(exc, OSError) and exc.strerror:
        text = exc.strerror
    return safe_text(text)


def safe_text(text: str) -> str:
    """Server-supplied text fit for a record or stderr: passwords masked, at most 300
    characters, control characters shown escaped."""
    return _CONTROL.sub(lambda m: repr(m.group())[1:-1], redact_text(text)[:300])
