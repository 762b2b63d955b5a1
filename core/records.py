"""A finished job's ``FetchResult``: the record keys every result carries, filled in one place.

The runner builds results here from a job and its last attempt, whichever process ran it, so
every record has the same keys (``final_url``, ``content_type``, ``sha256``, ``method``,
``source``, ``line``, ``id``, ``headers``).
"""

from __future__ import annotations

from poolfetch.core.models import AttemptOutcome, FetchJob, FetchResult
from poolfetch.core.redact import redact_url


def job_result(
    job: FetchJob,
    outcome: AttemptOutcome,
    *,
    ok: bool,
    attempts: int,
    elapsed_ms: float,
    error: str | None = None,
    record_headers: bool = False,
) -> FetchResult:
    """The result of ``job`` whose last attempt ended with ``outcome``.

    ``final_url`` is the URL the last attempt requested (after redirects); ``content_type``
    and ``headers`` are the final response's; ``sha256`` is the digest of a success body
    received whole, None otherwise (an error page is drained, not kept, and may be cut short).
    """
    answered = outcome.error is None and outcome.status is not None
    return FetchResult(
        url=redact_url(job.url),
        ok=ok,
        # a body that failed after the headers leaves no final status (ok needs one < 400)
        status=outcome.status if outcome.error is None else None,
        attempts=attempts,
        # a resumed body: what the file holds (its sha256 is the whole file's too)
        bytes=outcome.bytes + outcome.resumed_from,
        elapsed_ms=elapsed_ms,
        error=error,
        host=job.host,
        final_url=redact_url(job.target),
        content_type=outcome.content_type,
        sha256=outcome.digest if answered else None,
        method=job.request.method,
        source=job.source,
        line=job.line or None,
        request_id=job.request.id,
        headers=dict(outcome.headers) if record_headers else None,
        extra={"resumed_from": outcome.resumed_from} if outcome.resumed_from else {},
    )
