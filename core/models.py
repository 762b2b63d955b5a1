"""Value objects that travel along the pipeline: jobs in, attempts out, results to the sinks."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from poolfetch.core.ratelimit_headers import Quota
from poolfetch.core.request import GET_REQUEST, RequestSpec


@dataclass(frozen=True, slots=True)
class FetchJob:
    """One URL to fetch, as admission made it from one input line.

    ``host`` is the limiter key (see ``source.host_key``) of the URL requested next;
    ``seq`` orders jobs in input order. ``validators`` are the conditional-request headers the
    state stored for this URL. After a redirect the job carries on as the next hop:
    ``hop_url`` is the URL to request now (``url`` stays the input URL, which names the record,
    the body file and the state row), ``hops`` counts the redirects followed, and
    ``strip_credentials`` says the chain left the original host (no credential header follows).
    ``request`` is what the input asked to send (method, headers, body); ``hop_request`` what a
    redirect turned it into (a 303's GET), or None. ``source`` and ``line`` name the input line.
    """

    seq: int
    url: str
    host: str
    validators: tuple[tuple[str, str], ...] = ()
    hop_url: str | None = None
    hops: int = 0
    strip_credentials: bool = False
    request: RequestSpec = GET_REQUEST
    hop_request: RequestSpec | None = None
    source: str | None = None
    line: int = 0

    @property
    def target(self) -> str:
        """The URL this attempt requests: the input URL, or the redirect target reached."""
        return self.hop_url if self.hop_url is not None else self.url

    @property
    def sending(self) -> RequestSpec:
        """The request this attempt sends: the input's, or what a redirect made of it."""
        return self.hop_request if self.hop_request is not None else self.request


@dataclass(frozen=True, slots=True)
class AttemptOutcome:
    """What one request (one attempt) produced, handed from a worker to the main thread.

    Exactly one of ``status`` (a response arrived) and ``error`` (it did not, or the body failed)
    describes the end; a response whose body failed has both. ``digest`` is the SHA-256 of the
    decoded 2xx body, computed as it streams in; ``headers`` the response headers named by
    ``--record-header`` (lower-case names). ``quota`` is what the response announced about the
    client's quota (parsed on the worker; None without rate headers).
    """

    started: float
    elapsed: float
    status: int | None = None
    error: Exception | None = None
    retry_after: str | None = None
    etag: str | None = None
    last_modified: str | None = None
    bytes: int = 0
    digest: str | None = None
    final_url: str | None = None
    quota: Quota | None = None
    #: Bytes of the body already held from an earlier attempt (a ``Range`` resume): the
    #: body is ``resumed_from + bytes`` long.
    resumed_from: int = 0
    content_type: str | None = None
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(slots=True)
class FetchResult:
    """The final word on one input line: becomes one JSON Lines record.

    Mutable only while the main thread assembles it; never shared with workers.
    ``request_id`` is the request object's ``id`` (the record's ``id``, absent when None);
    ``headers`` the ``--record-header`` values (the record's ``headers``, absent when None).
    """

    url: str
    ok: bool
    status: int | None
    attempts: int
    bytes: int = 0
    elapsed_ms: float = 0.0
    error: str | None = None
    path: str | None = None
    skipped: str | None = None
    unchanged: bool = False
    host: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    final_url: str | None = None
    content_type: str | None = None
    sha256: str | None = None
    method: str | None = None
    source: str | None = None
    line: int | None = None
    request_id: str | int | float | None = None
    headers: dict[str, str] | None = None

    def to_record(self) -> dict[str, Any]:
        """The JSON object of the contract (key order fixed for readable output)."""
        record: dict[str, Any] = {
            "url": self.url,
            "ok": self.ok,
            "status": self.status,
            "attempts": self.attempts,
            "bytes": self.bytes,
            "elapsed_ms": round(self.elapsed_ms, 3),
            "error": self.error,
            "path": self.path,
            "skipped": self.skipped,
            "unchanged": self.unchanged,
            "final_url": self.final_url,
            "content_type": self.content_type,
            "sha256": self.sha256,
            "method": self.method,
            "source": self.source,
            "line": self.line,
        }
        if self.request_id is not None:
            record["id"] = self.request_id
        if self.headers is not None:
            record["headers"] = self.headers
        record.update(self.extra)
        return record
