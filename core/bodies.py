"""The seam between the wire and the files: body writers, and the rules of a Range resume.

``transport`` streams a success body into a ``BodyWriter`` that a ``BodyTarget`` gave it; it
never learns where or how the bytes are stored (``partials.py`` implements both: temporary files
renamed into place, or, with ``-C``, partial files kept across runs). What a resume may do is
decided here, by pure functions that unit tests call with plain values:

* which validator a partial body is kept under (``resume_validator``): a strong ``ETag``, else
  ``Last-Modified``; none at all, or a content coding (offsets would be those of the coded
  bytes), and the body cannot be resumed;
* what an answer to ``Range: bytes=N-`` with ``If-Range`` means (``judge``): a ``206`` whose
  ``Content-Range`` starts at N (and whose validator is ours) is appended; a ``200`` starts over
  (the server ignores Range, or the resource changed); anything else that talks about a range
  (a ``416``, a ``206`` from elsewhere) means the partial file cannot be trusted: it is dropped
  and the URL fetched whole by the next attempt.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Protocol

from poolfetch.core.errors import BodyTooLargeError, OutputError

if TYPE_CHECKING:
    from poolfetch.core.models import FetchJob
    from poolfetch.core.sinks import PendingBody

_CONTENT_RANGE = re.compile(r"^\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*$", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class ResumePoint:
    """A partial body to continue: bytes held, and the validator they were received under."""

    offset: int
    validator: str

    def request_headers(self) -> tuple[tuple[str, str], ...]:
        """``Range`` from the first missing byte, ``If-Range`` so a changed resource comes
        whole, and no content coding (the offsets are those of the bytes on disk)."""
        return (
            ("Range", f"bytes={self.offset}-"),
            ("If-Range", self.validator),
            ("Accept-Encoding", "identity"),
        )


class Verdict(Enum):
    """What an answer to a resume request means for the partial file."""

    APPEND = "append"  # 206 from our offset: add to the partial file
    WHOLE = "whole"  # 200: the whole body, written from the start
    REFETCH = "refetch"  # the partial file cannot be used: drop it, fetch again without Range


def resume_validator(headers: Mapping[str, str]) -> str | None:
    """The validator a partial body of this response can be resumed under, or None."""
    coding = headers.get("Content-Encoding", "identity").strip().lower()
    if coding not in ("", "identity"):
        return None
    etag = headers.get("ETag", "").strip()
    if etag.startswith('"') and etag.endswith('"') and len(etag) >= 2:
        return etag
    modified = headers.get("Last-Modified", "").strip()
    return modified or None


def judge(status: int, headers: Mapping[str, str], resume: ResumePoint | None) -> Verdict:
    """What the answer to a request (with ``resume``, or without) means for its body."""
    if resume is None:
        return Verdict.WHOLE  # (a 206 nobody asked for is saved as it always was)
    if status == 206:
        match = _CONTENT_RANGE.match(headers.get("Content-Range", ""))
        validator = resume_validator(headers)
        if match is None or int(match.group(1)) != resume.offset:
            return Verdict.REFETCH
        if validator is not None and validator != resume.validator:
            return Verdict.REFETCH
        return Verdict.APPEND
    if status == 416:
        return Verdict.REFETCH
    return Verdict.WHOLE


def keeps_partial(error: BaseException) -> bool:
    """Whether a body cut off by ``error`` is worth resuming: a body too large or a disk that
    refuses it would fail the same way again."""
    return not isinstance(error, BodyTooLargeError | OutputError)


class BodyWriter(Protocol):
    """Where one response's body goes, piece by piece."""

    @property
    def offset(self) -> int:
        """Bytes of the body already held before this response (a resume), else 0."""
        ...

    @property
    def size(self) -> int:
        """Bytes of the whole body written so far, ``offset`` included."""
        ...

    def write(self, chunk: bytes) -> None: ...

    def finish(self) -> tuple[PendingBody, str]:
        """The body is complete: the file to commit, and the SHA-256 of the whole body."""
        ...

    def abort(self, error: BaseException) -> None:
        """The body was cut off by ``error``: keep what is resumable, remove the rest."""
        ...


class BodyTarget(Protocol):
    """Gives the transport a writer for each success body (``-o DIR``).

    An attempt calls ``begin`` before its request and ``end`` when it is over, on the same
    worker thread; writers are opened and finished in between.
    """

    def begin(self, job: FetchJob) -> ResumePoint | None:
        """An attempt of ``job`` starts: a partial body to continue, if there is one."""
        ...

    def end(self, job: FetchJob) -> None:
        """The attempt of ``job`` begun on this thread is over."""
        ...

    def open(self, job: FetchJob, headers: Mapping[str, str], offset: int) -> BodyWriter:
        """A writer for the body of this response, continuing at ``offset`` (0: from the
        start). Raises ``OutputError``."""
        ...

    def drop(self, job: FetchJob) -> None:
        """Forget ``job``'s partial body (it cannot be resumed)."""
        ...
