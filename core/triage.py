"""What an input line becomes before any request, and what a 304 means: shared by the local
runner and the shared-run coordinator, so both record exactly the same things."""

from __future__ import annotations

from dataclasses import dataclass

from poolfetch.core.admission import SourceItem
from poolfetch.core.models import FetchResult
from poolfetch.core.redact import redact_url
from poolfetch.core.source import BadLine
from poolfetch.core.state import StateStore


@dataclass(frozen=True, slots=True)
class ToFetch:
    """A URL to fetch, with the conditional-request headers the state has for it."""

    url: str
    validators: tuple[tuple[str, str], ...]


def triage(item: SourceItem, state: StateStore | None) -> FetchResult | ToFetch:
    """A record right away (a bad line; a URL already done in the run being resumed), or a
    URL to fetch."""
    line = item.line
    if isinstance(line, BadLine):
        return FetchResult(
            url=redact_url(line.text), ok=False, status=None, attempts=0, error=line.reason
        )
    validators = item.validators
    stored = state.lookup(line) if state is not None else None
    if stored is not None:
        if stored.done_in_run:
            return FetchResult(
                url=redact_url(line),
                ok=True,
                status=stored.status,
                attempts=0,
                bytes=stored.bytes,
                path=stored.path,
                skipped="done",
            )
        validators = stored.validators
    return ToFetch(line, validators)


def apply_not_modified(result: FetchResult, url: str, state: StateStore | None) -> bool:
    """A 304 against the state keeps the previous body: the record gets its path and size and
    says ``unchanged``. Returns True when it applied."""
    if state is None or not result.ok or result.status != 304:
        return False
    stored = state.lookup(url)
    if stored is None:
        return False
    result.path, result.bytes, result.unchanged = stored.path, stored.bytes, True
    return True
