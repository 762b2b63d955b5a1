"""A finished job's ``FetchResult``: the record keys every result carries, filled in one place.

The local runner builds results here from a job and its last attempt; a shared run's
coordinator rebuilds them here from the records its workers published, so both write the same
keys (``final_url``, ``content_type``, ``sha256``, ``method``, ``source``, ``line``, ``id``,
``headers``).
"""

from __future__ import annotations

from typing import Any

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
        tag=job.tag,
        final=outcome,
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


#: Record keys a worker's record carries over to the coordinator's as they are.
_CARRIED = ("final_url", "content_type", "sha256", "method")


def carry_record_keys(result: FetchResult, record: dict[str, Any]) -> None:
    """Copy the keys of a worker's published ``record`` into the coordinator's ``result``."""
    result.final_url, result.content_type, result.sha256, result.method = (
        record.get(key) for key in _CARRIED
    )
    result.request_id = record.get("id")
    headers = record.get("headers")
    result.headers = dict(headers) if isinstance(headers, dict) else None
