"""Range requests for the practice server (RFC 9110 section 14), and its large bodies.

``/large/ID/N`` serves N bytes of a repeating 64-byte pattern, shifted by the version of ID
(``PracticeServer.set_version``), so a new version has other bytes at every offset and a resume
across a change would show. This module decides what a request gets (``answer_range``: a
``200``, a ``206`` with ``Content-Range``, or a ``416``) and produces the bytes at any offset;
the handler in ``practice_routes.py`` writes them, at a given rate when asked to trickle.

Stdlib only and independent of the engine, as the rest of the practice server.
"""

from __future__ import annotations

import email.utils
import zlib
from dataclasses import dataclass

#: 64 bytes; every body of the practice server repeats it.
PATTERN = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-\n"
PIECE = 64 * 1024
_DOUBLE = PATTERN * (2 * PIECE // len(PATTERN))
#: Last-Modified of version V of a resource is this (2024-01-01T00:00:00Z) plus V days.
EPOCH = 1_704_067_200


@dataclass(frozen=True, slots=True)
class RangeAnswer:
    """What to send: ``status`` 200, 206 or 416, the body's ``[start, end)`` and the headers
    that say so (``Content-Range``)."""

    status: int
    start: int
    end: int
    headers: tuple[tuple[str, str], ...] = ()


def validators(resource: str, version: int, size: int) -> tuple[str, str]:
    """The strong ETag and the Last-Modified date of one version of ``/large/ID/N``."""
    etag = f'"{zlib.crc32(resource.encode()):08x}-{version}-{size}"'
    return etag, email.utils.formatdate(EPOCH + version * 86_400, usegmt=True)


def answer_range(
    range_header: str | None,
    if_range: str | None,
    length: int,
    etag: str | None,
    last_modified: str | None,
) -> RangeAnswer:
    """The answer to a GET with these ``Range`` / ``If-Range`` headers.

    A ``Range`` the server cannot use (another unit, several ranges, bad syntax) is ignored, as
    RFC 9110 allows; an ``If-Range`` that does not match (weak or other entity tag, a date other
    than Last-Modified) means the whole representation (``200``); a first byte at or past the
    end is ``416`` with ``Content-Range: bytes */LENGTH``.
    """
    whole = RangeAnswer(200, 0, length)
    if range_header is None:
        return whole
    if if_range is not None and not _if_range_matches(if_range.strip(), etag, last_modified):
        return whole
    unit, _, spec = range_header.strip().partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return whole
    first_text, dash, last_text = spec.strip().partition("-")
    first_text, last_text = first_text.strip(), last_text.strip()
    if not dash or not (first_text or last_text):
        return whole
    if not all(t.isdigit() for t in (first_text, last_text) if t):
        return whole
    if not first_text:  # suffix: the last N bytes
        first, last = max(0, length - int(last_text)), length - 1
    else:
        first = int(first_text)
        last = min(int(last_text), length - 1) if last_text else length - 1
        if last_text and int(last_text) < first:
            return whole
    if first >= length or last < first:
        return RangeAnswer(416, 0, 0, (("Content-Range", f"bytes */{length}"),))
    return RangeAnswer(206, first, last + 1, (("Content-Range", f"bytes {first}-{last}/{length}"),))


def _if_range_matches(value: str, etag: str | None, last_modified: str | None) -> bool:
    """RFC 9110 13.1.5: an entity tag matches by strong comparison, a date only exactly."""
    if value.startswith(('"', "W/")):
        return etag is not None and not etag.startswith("W/") and value == etag
    return last_modified is not None and value == last_modified


def piece(offset: int, size: int, version: int) -> memoryview:
    """``size`` (at most ``PIECE``) bytes of a version's body, from ``offset``."""
    shift = (offset + version) % len(PATTERN)
    return memoryview(_DOUBLE)[shift : shift + min(size, PIECE)]


def large_body(size: int, version: int = 1) -> bytes:
    """The whole body of ``/large/ID/SIZE`` at ``version`` (what a test compares files with)."""
    return b"".join(
        piece(offset, min(PIECE, size - offset), version) for offset in range(0, size, PIECE)
    )
