"""URL sources: files or standard input, read as a stream of lines, parsed into jobs.

Nothing here holds more than one line in memory; an overlong line is consumed in chunks and
reported, never read whole. Parsing never raises on input: every line becomes a URL, a skip
(blank or comment) or a ``BadLine`` with a message a person understands.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import BinaryIO
from urllib.parse import SplitResult, urlsplit

from poolfetch.core.errors import SourceError

MAX_URL_LENGTH = 8192
_READ_LIMIT = MAX_URL_LENGTH * 4 + 2  # UTF-8 is at most 4 bytes a character, plus CR LF
_DEFAULT_PORTS = {"http": 80, "https": 443}
STDIN_NAME = "-"
#: Only ASCII white space surrounds a URL; other control characters make the line bad.
_ASCII_SPACE = b" \t\r\n\x0b\x0c"
#: White space (as ``str.isspace``) and control characters (Unicode category Cc).
_SPACE_OR_CONTROL = re.compile(r"[\s\x00-\x1f\x7f-\x9f]")


@dataclass(frozen=True, slots=True)
class BadLine:
    """An input line that is not a URL poolfetch can fetch."""

    text: str
    reason: str


def open_sources(names: Iterable[str]) -> list[tuple[str, BinaryIO]]:
    """Open every source up front so an unreadable one is a usage error before any request."""
    opened: list[tuple[str, BinaryIO]] = []
    names = list(names) or [STDIN_NAME]
    try:
        for name in names:
            if name == STDIN_NAME:
                opened.append((name, sys.stdin.buffer))
            else:
                opened.append((name, open(name, "rb")))  # noqa: SIM115 - closed by read_lines
    except OSError as exc:
        for _, handle in opened:
            if handle is not sys.stdin.buffer:
                handle.close()
        raise SourceError(f"cannot read {exc.filename}: {exc.strerror}") from exc
    return opened


def read_lines(sources: list[tuple[str, BinaryIO]]) -> Iterator[bytes]:
    """Yield raw lines (without the line break) of each source in turn, streaming.

    A line longer than the parser accepts is cut to its first ``_READ_LIMIT`` bytes and the rest
    is skipped, so memory stays flat however long the line is.
    """
    for name, handle in sources:
        try:
            while True:
                line = handle.readline(_READ_LIMIT)
                if not line:
                    break
                if not line.endswith(b"\n") and len(line) == _READ_LIMIT:
                    while True:
                        rest = handle.readline(65536)
                        if not rest or rest.endswith(b"\n"):
                            break
                yield line.rstrip(b"\r\n")
        except OSError as exc:
            raise SourceError(f"error reading {name}: {exc.strerror}") from exc
        finally:
            if handle is not sys.stdin.buffer:
                handle.close()


def is_skipped(stripped: bytes) -> bool:
    """Blank and comment lines (decided on bytes, so any encoding of a comment is skipped)."""
    return not stripped or stripped.startswith(b"#")


def parse_line(raw: bytes) -> str | BadLine | None:
    """Turn one input line into a URL, ``None`` for blank/comment lines, or a ``BadLine``."""
    stripped = raw.strip(_ASCII_SPACE)
    if is_skipped(stripped):
        return None
    if len(raw) >= _READ_LIMIT:
        shown = stripped[: MAX_URL_LENGTH * 4].decode("utf-8", "replace")[:MAX_URL_LENGTH]
        return BadLine(shown, f"line is longer than {MAX_URL_LENGTH} characters")
    try:
        text = stripped.decode("utf-8")
    except UnicodeDecodeError:
        return BadLine(stripped.decode("utf-8", "replace"), "line is not valid UTF-8")
    if len(text) > MAX_URL_LENGTH:
        return BadLine(text[:MAX_URL_LENGTH], f"line is longer than {MAX_URL_LENGTH} characters")
    found = _SPACE_OR_CONTROL.search(text)
    if found is not None:
        char = found.group()
        what = "white space" if char.isspace() else "a control character"
        return BadLine(text, f"URL contains {what} ({char!r})")
    reason = _url_problem(text)
    if reason is not None:
        return BadLine(text, reason)
    return text


def _url_problem(text: str) -> str | None:
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        if "port" in str(exc).lower():
            return "port out of range (1-65535)"
        return f"not a valid URL: {exc}"
    if parts.scheme.lower() not in _DEFAULT_PORTS:
        shown = parts.scheme or "none"
        return f"not an http or https URL (scheme: {shown})"
    if not parts.hostname:
        return "URL has no host"
    if port == 0:
        return "port 0 is out of range"
    return None


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
    """How many non-blank, non-comment lines the files hold (streamed; None if unreadable).

    Used for the progress bar's total, from a background thread; the count is of lines that
    will produce a record, bad ones included.
    """
    total = 0
    try:
        for path in paths:
            with open(path, "rb") as handle:
                for line in handle:
                    if not is_skipped(line.strip(_ASCII_SPACE)):
                        total += 1
    except OSError:
        return None
    return total
