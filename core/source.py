"""URL sources: files or standard input, read as a stream of lines, parsed into jobs.

Nothing here holds more than one line in memory; an overlong line is consumed in chunks and
reported, never read whole. Parsing never raises on input: every line becomes a URL, a skip
(blank or comment) or a ``BadLine`` with a message a person understands.
"""

from __future__ import annotations

import codecs
import re
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import BinaryIO
from urllib.parse import SplitResult, urlsplit

from poolfetch.core.errors import SourceError
from poolfetch.core.redact import redact_url

MAX_URL_LENGTH = 8192
#: Longest line ``read_lines`` yields: UTF-8 is at most 4 bytes a character, plus CR LF. A
#: yielded line this long is the cut head of a line too long to be a URL.
_READ_LIMIT = MAX_URL_LENGTH * 4 + 2
#: ``_READ_LIMIT`` for other line parsers (request objects): a line this long was cut.
LINE_READ_LIMIT = _READ_LIMIT
_CHUNK = 65536
_DEFAULT_PORTS = {"http": 80, "https": 443}
STDIN_NAME = "-"
_BOM = b"\xef\xbb\xbf"
#: ASCII white space: the bytes the fast path strips.
_ASCII_SPACE = b" \t\r\n\x0b\x0c"
#: White space stripped from around a line: Unicode white space (``str.isspace``) except the
#: control characters among it (U+001C-U+001F, U+0085), plus U+FEFF (a byte order mark or a
#: zero-width no-break space pasted along with a URL). A control character makes a line bad.
SPACE_CHARS = (
    " \t\n\x0b\x0c\r\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008"
    "\u2009\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
)
#: The control characters ``str.isspace`` counts as white space: reported as control characters.
_CONTROL_SPACE = "\x1c\x1d\x1e\x1f\x85"
#: White space (as ``str.isspace``) and control characters (Unicode category Cc).
_SPACE_OR_CONTROL = re.compile(r"[\s\x00-\x1f\x7f-\x9f]")


@dataclass(frozen=True, slots=True)
class BadLine:
    """An input line that is not a URL poolfetch can fetch."""

    text: str
    reason: str


class LongLine(bytes):
    """The head of a line too long to be a URL (what ``_reduce_long_line`` kept of it), and
    how many characters the whole line had without its surrounding white space."""

    length: int

    def __new__(cls, head: bytes, length: int) -> LongLine:
        line = super().__new__(cls, head)
        line.length = length
        return line


def open_sources(names: Iterable[str]) -> list[tuple[str, BinaryIO]]:
    """Open every source up front so an unreadable one is a usage error before any request
    (standard input closed, as a daemon or ``<&-`` leaves it, too)."""
    opened: list[tuple[str, BinaryIO]] = []
    names = list(names) or [STDIN_NAME]
    if STDIN_NAME in names and sys.stdin is None:
        raise SourceError("cannot read standard input: it is closed")
    try:
        for name in names:
            if name == STDIN_NAME:
                opened.append((name, sys.stdin.buffer))
            else:
                opened.append((name, open(name, "rb")))  # noqa: SIM115 - closed by read_lines
    except OSError as exc:
        for name, handle in opened:
            if name != STDIN_NAME:
                handle.close()
        raise SourceError(f"cannot read {exc.filename}: {exc.strerror}") from exc
    return opened


def read_lines(sources: list[tuple[str, BinaryIO]]) -> Iterator[bytes]:
    """Yield raw lines (without the line break) of each source in turn, streaming.

    A UTF-8 byte order mark at the start of a source is dropped. A line of ``_READ_LIMIT`` bytes
    or more is read in chunks of bounded size and reduced to what ``parse_line`` needs (see
    ``_reduce_long_line``), so memory stays flat however long the line is.
    """
    for name, handle in sources:
        try:
            first = True
            while True:
                line = handle.readline(_READ_LIMIT)
                if not line:
                    break
                cut = len(line) == _READ_LIMIT and not line.endswith(b"\n")
                if first:
                    first = False
                    line = line.removeprefix(_BOM)
                if cut:
                    yield _reduce_long_line(line, handle)
                else:
                    yield line.rstrip(b"\r\n")
        except OSError as exc:
            raise SourceError(f"error reading {name}: {exc.strerror}") from exc
        finally:
            if name != STDIN_NAME:
                handle.close()


def _reduce_long_line(head: bytes, handle: BinaryIO) -> bytes:
    """The line begun by ``head`` (which filled a whole read) without its surrounding white
    space, the rest read from ``handle`` in chunks up to and including the line break.

    The content between the white space is returned whole when it is shorter than
    ``_READ_LIMIT`` bytes (a URL padded with any amount of white space is still a URL);
    otherwise only its first ``_READ_LIMIT`` bytes, which ``parse_line`` reports as too long.
    Holds at most about ``_READ_LIMIT + _CHUNK`` bytes. A white-space run that may turn out to
    be inside the content is kept only as far as it can still fit. Content cut short comes
    back as a ``LongLine`` that also tells how many characters the whole content had.
    """
    decoder = codecs.getincrementaldecoder("utf-8")("surrogateescape")
    kept = bytearray()  # the content so far, at most _READ_LIMIT bytes
    gap = ""  # white space after ``kept``: trailing, unless more content follows
    length = 0  # characters of the content up to its last non-space character
    spaces = 0  # characters of white space after that: inside it, if more content follows
    started = False
    chunk = head
    while True:
        ended = not chunk or chunk.endswith(b"\n")
        text = decoder.decode(chunk, final=ended)
        if not started:
            text = text.lstrip(SPACE_CHARS)
            started = bool(text)
        body = text.rstrip(SPACE_CHARS)
        if body:
            length += spaces + len(body)
            spaces = len(text) - len(body)
        else:
            spaces += len(text)
        if len(kept) < _READ_LIMIT:
            if body:
                room = _READ_LIMIT - len(kept)  # characters are at least 1 byte: enough
                kept += (gap + body)[:room].encode("utf-8", "surrogateescape")[:room]
                gap = text[len(body) :]
            else:
                gap = (gap + text)[:_READ_LIMIT]
        if ended:
            break
        chunk = handle.readline(_CHUNK)
    return LongLine(bytes(kept), length) if len(kept) >= _READ_LIMIT else bytes(kept)


def strip_line(raw: bytes) -> bytes:
    """``raw`` without its surrounding white space (``SPACE_CHARS``).

    The fast path is for the usual line, whose ends are ASCII after stripping ASCII white
    space: every other white-space character begins and ends with a byte of 0x80 or more.
    Invalid UTF-8 survives unchanged (``surrogateescape``) for ``parse_line`` to report.
    """
    stripped = raw.strip(_ASCII_SPACE)
    if not stripped or (stripped[0] | stripped[-1]) < 0x80:
        return stripped
    text = stripped.decode("utf-8", "surrogateescape").strip(SPACE_CHARS)
    return text.encode("utf-8", "surrogateescape")


def is_skipped(raw: bytes) -> bool:
    """True for a blank or comment line: one that produces no record (see ``_content``)."""
    return _content(raw) is None


def _content(raw: bytes) -> bytes | None:
    """The line stripped, or None for a blank or comment line: the one skip test that both
    ``parse_line`` and ``count_jobs`` use, so the progress total is exactly the number of
    records. Decided on bytes, so any encoding of a comment is skipped."""
    stripped = strip_line(raw)
    return None if not stripped or stripped.startswith(b"#") else stripped


def parse_line(raw: bytes) -> str | BadLine | None:
    """Turn one line of ``read_lines`` into a URL, ``None`` for blank/comment lines, or a
    ``BadLine``."""
    stripped = _content(raw)
    if stripped is None:
        return None
    if len(raw) >= _READ_LIMIT:
        length = (
            raw.length if isinstance(raw, LongLine) else len(stripped.decode("utf-8", "replace"))
        )
        return _too_long(stripped[: MAX_URL_LENGTH * 4].decode("utf-8", "replace"), length)
    try:
        text = stripped.decode("utf-8")
    except UnicodeDecodeError:
        shown = stripped.decode("utf-8", "replace")
        if len(shown) > MAX_URL_LENGTH:
            return _too_long(shown, len(shown))
        return BadLine(shown, "line is not valid UTF-8")
    if len(text) > MAX_URL_LENGTH:
        return _too_long(text, len(text))
    found = _SPACE_OR_CONTROL.search(text)
    if found is not None:
        char = found.group()
        space = char.isspace() and char not in _CONTROL_SPACE
        what = "white space" if space else "a control character"
        return BadLine(text, f"URL contains {what} ({char!r})")
    reason = url_problem(text)
    if reason is not None:
        return BadLine(text, reason)
    return text


def _too_long(text: str, length: int) -> BadLine:
    """The first ``MAX_URL_LENGTH`` characters of a line of ``length`` characters."""
    # redacted before the cut: a cut through a password would hide it from redaction later
    shown = redact_url(text)[:MAX_URL_LENGTH]
    return BadLine(
        shown, f"line is longer than {MAX_URL_LENGTH} characters ({length:,} characters)"
    )


def url_problem(text: str) -> str | None:
    """Why ``text`` (free of white space and control characters) is not an http(s) URL
    poolfetch can fetch, or None; also used for redirect targets.

    The reasons are fixed phrases, never urlsplit's messages: those quote the netloc, which may
    hold a password, and reasons reach records and the summary's top errors.
    """
    try:
        parts = urlsplit(text)
    except ValueError as exc:
        return _split_problem(str(exc))
    if parts.scheme.lower() not in _DEFAULT_PORTS:
        shown = parts.scheme or "none"
        return f"not an http or https URL (scheme: {shown})"
    if not parts.hostname:
        return "URL has no host"
    try:
        port = parts.port
    except ValueError as exc:
        return _split_problem(str(exc))
    if port == 0:
        return "port 0 is out of range (1-65535)"
    return None


def _split_problem(message: str) -> str:
    """A fixed reason for one of urlsplit's ValueErrors (never its text)."""
    lowered = message.lower()
    if "port could not be cast" in lowered:
        return "port is not a number"
    if "port out of range" in lowered:
        return "port out of range (1-65535)"
    if "ipv6" in lowered or "ipv4" in lowered:
        return "not a valid URL: bad IP address in brackets"
    if "nfkc" in lowered:
        return "not a valid URL: host has characters that change under NFKC normalization"
    return "not a valid URL"


def host_key(url: str) -> str:
    """The key that per-host limits, pauses and connection counts are kept under.

    A host is the lower-cased host name (or IP literal) and the port, with the scheme's default
    port filled in: ``https://Example.com/`` and ``https://example.com:443/x`` are one host,
    ``http://example.com`` (port 80) is another. Names are not resolved: two names for one IP
    are two hosts, which is what a server's per-virtual-host limits see.
    """
    return _host_key(urlsplit(url))


def _host_key(parts: SplitResult) -> str:
    hostname = parts.hostname or ""
    port = parts.port or _DEFAULT_PORTS.get(parts.scheme.lower(), 0)
    if ":" in hostname:
        return f"[{hostname}]:{port}"
    return f"{hostname}:{port}"


def count_jobs(paths: list[str]) -> int | None:
    """How many lines of the files will produce a record (streamed; None if unreadable).

    Used for the progress bar's total, from a background thread. Lines come from the same
    bounded reader and pass the same ``is_skipped`` test as a run's, so bad lines count and
    the total equals the number of records; a giant line is never held whole.
    """
    total = 0
    try:
        for path in paths:
            for line in read_lines([(path, open(path, "rb"))]):  # noqa: SIM115 - read_lines closes
                if not is_skipped(line):
                    total += 1
    except (OSError, SourceError):
        return None
    return total
