"""The one exception tree of poolfetch.

::

    PoolfetchError
    ├── ConfigError            bad option value (CLI exit 2)
    ├── SourceError            a URL source cannot be opened or read (CLI exit 2)
    ├── StateError             the --state database cannot be used
    │   └── StateLockedError   another run holds the state (CLI exit 75)
    ├── CoordinationError      the shared (Redis) backend failed
    ├── ResultsClosedError     the reader of the results went away (broken pipe; exit 141)
    ├── WorkerProcessError     no --processes worker process can run (exit 71)
    └── FetchError             one URL failed; ends up as the record's ``error``
        ├── TransportError     the exchange with the server broke: retryable
        │   ├── ConnectError       could not connect / connection reset
        │   │   ├── NotSentError   refused, DNS, connect timeout: nothing reached the server
        │   │   │   └── ConnectionRefused  refused (too many at once, if others are in flight)
        │   │   └── ConnectionReset    reset after the request was sent (likewise)
        │   ├── RequestTimeout     connect or read timeout
        │   └── ProtocolError      malformed response, short or broken body
        ├── TlsError           a TLS handshake no retry can mend (plain-HTTP port, no
        │   │                  shared protocol, the server refused our certificate)
        │   └── CertificateError   the server's certificate failed verification
        ├── ContentCodingError the body's Content-Encoding cannot be decoded
        ├── HostGivenUpError   the host failed --max-host-errors times in a row
        ├── BodyTooLargeError  decoded body over --max-bytes
        ├── RedirectError      too many redirects, or to a scheme we do not fetch
        ├── RetryAfterTooLongError  the server asked for a longer pause than --max-retry-after
        └── OutputError        the body could not be written under --output-dir

Only ``TransportError`` (and the statuses of ``--retry-on``) are retried; the rest are final.
``transport.py`` is the one place that maps ``requests``/``urllib3`` exceptions into this tree.
"""

from __future__ import annotations


class PoolfetchError(Exception):
    """Base of every error poolfetch raises on purpose."""


class ConfigError(PoolfetchError):
    """An option value that cannot be used."""


class SourceError(PoolfetchError):
    """A URL source that cannot be opened or read."""


class StateError(PoolfetchError):
    """The state database cannot be opened, migrated or written."""


class StateLockedError(StateError):
    """Another poolfetch run is using the same state file."""


class CoordinationError(PoolfetchError):
    """The shared backend (Redis) is unreachable or answered nonsense."""


class ResultsClosedError(PoolfetchError):
    """The results stream was closed by its reader (``poolfetch run … | head``)."""


class WorkerProcessError(PoolfetchError):
    """No worker process could be started (or, with no worker threads of its own in the main
    process, every one died and none could replace it)."""


class FetchError(PoolfetchError):
    """One URL failed. ``str(error)`` is what the record's ``error`` field says."""


class TransportError(FetchError):
    """The exchange with the server broke; worth another attempt."""


class ConnectError(TransportError):
    """The connection could not be made, or was reset."""


class NotSentError(ConnectError):
    """The connection failed before the request was sent (refused, name not resolved, connect
    timeout): the server cannot have acted on it, so even a POST may be tried again."""


class ConnectionRefused(NotSentError):
    """The server refused the connection (with others open to it: "too many at once")."""


class ConnectionReset(ConnectError):
    """The server reset the connection after the request was sent (with others open to it:
    "too many at once")."""


class RequestTimeout(TransportError):
    """The connect or read timeout fired."""


class ProtocolError(TransportError):
    """The server's response was malformed or ended early."""


class TlsError(FetchError):
    """The TLS handshake failed in a way the same attempt would repeat: final."""


class CertificateError(TlsError):
    """The server's certificate was not trusted (unknown CA, expired, wrong host name)."""


class ContentCodingError(FetchError):
    """The body's ``Content-Encoding`` is one poolfetch cannot decode, or its data is corrupt:
    final, and the body is never saved as if it were the content."""


class HostGivenUpError(FetchError):
    """The URL's host failed at the connection level ``--max-host-errors`` times in a row."""


class BodyTooLargeError(FetchError):
    """The decoded body grew past ``--max-bytes``."""


class RedirectError(FetchError):
    """Too many redirects, or a redirect poolfetch will not follow."""


class RetryAfterTooLongError(FetchError):
    """The server's Retry-After is longer than ``--max-retry-after``."""


class OutputError(FetchError):
    """The body could not be saved under ``--output-dir``."""
