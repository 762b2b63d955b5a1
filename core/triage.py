"""What an input line becomes before any request, and what a 304 means (the runner's)."""

from __future__ import annotations

from dataclasses import dataclass

from poolfetch.core.admission import SourceItem
from poolfetch.core.models import FetchResult
from poolfetch.core.redact import redact_url
from poolfetch.core.request import CONDITIONAL_METHODS, RequestBuilder, RequestSpec
from poolfetch.core.source import BadLine
from poolfetch.core.state import StateStore


@dataclass(frozen=True, slots=True)
class ToFetch:
    """A request to send: its URL, what it sends, its ``--state`` key, the conditional-request
    headers the state has for it, and ``text``, the line as read (a URL or a request object),
    which a shared run hands to its workers."""

    url: str
    validators: tuple[tuple[str, str], ...]
    request: RequestSpec
    key: str
    text: str


class OutputClaims:
    """The ``output`` names already taken in this run (main thread only).

    Kept as 64-bit hashes, so a run of millions of named outputs holds integers, not names; a
    false clash is about as likely as one in 10^5 runs of ten million names.
    """

    def __init__(self) -> None:
        self._taken: set[int] = set()

    def claim(self, name: str) -> bool:
        """Take ``name``; False if an earlier request of the run took it."""
        token = hash(name)
        if token in self._taken:
            return False
        self._taken.add(token)
        return True


def triage(
    item: SourceItem,
    state: StateStore | None,
    builder: RequestBuilder,
    claims: OutputClaims | None = None,
) -> FetchResult | ToFetch:
    """A record right away (a bad line; an ``output`` name an earlier request took; a request
    already done in the run being resumed), or a request to fetch."""
    line = item.line
    if isinstance(line, BadLine):
        return _refused(item, builder, line.text, line.reason)
    spec = builder.resolve(line)
    if isinstance(spec, BadLine):
        return _refused(item, builder, spec.text, spec.reason)
    url, text = (line, line) if isinstance(line, str) else (line.url, line.text)
    if spec.output is not None and claims is not None and not claims.claim(spec.output):
        error = f"output {spec.output!r} is already named by an earlier request of this run"
        return _refused(item, builder, redact_url(url), error, spec)
    key = spec.key(url)
    validators: tuple[tuple[str, str], ...] = ()
    stored = state.lookup(key) if state is not None else None
    if stored is not None:
        if stored.done_in_run:
            result = _result(item, builder, redact_url(url), spec, ok=True, status=stored.status)
            result.bytes, result.path, result.skipped = stored.bytes, stored.path, "done"
            result.final_url, result.content_type = stored.final_url, stored.content_type
            result.sha256 = stored.digest
            return result
        validators = stored.validators if spec.method in CONDITIONAL_METHODS else ()
    return ToFetch(url, validators, spec, key, text)


def _refused(
    item: SourceItem,
    builder: RequestBuilder,
    shown: str,
    error: str,
    spec: RequestSpec | None = None,
) -> FetchResult:
    """The record of a line that is not fetched: ``attempts: 0``, the reason in ``error``."""
    result = _result(item, builder, redact_url(shown), spec or builder.base, ok=False, status=None)
    result.error = error
    return result


def _result(
    item: SourceItem,
    builder: RequestBuilder,
    shown: str,
    spec: RequestSpec,
    *,
    ok: bool,
    status: int | None,
) -> FetchResult:
    return FetchResult(
        url=shown,
        ok=ok,
        status=status,
        attempts=0,
        method=spec.method,
        source=item.source,
        line=item.number or None,
        request_id=spec.id,
        headers={} if builder.record_headers else None,
    )


def apply_not_modified(result: FetchResult, key: str, state: StateStore | None) -> bool:
    """A 304 against the state keeps the previous body: the record gets its path, size and
    digest and says ``unchanged``. Returns True when it applied."""
    if state is None or not result.ok or result.status != 304:
        return False
    stored = state.lookup(key)
    if stored is None:
        return False
    result.path, result.bytes, result.unchanged = stored.path, stored.bytes, True
    result.sha256 = stored.digest
    return True
