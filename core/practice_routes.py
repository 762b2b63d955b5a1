"""The paths the practice server answers, and what each one sends.

``RouteHandler`` maps a request's path and query to an answer (fixed, large, slow, failing,
redirecting, conditional, gzipped, reset and stalled responses; the list is on
``PracticeServer``), using the tools of its base class ``practice_http.Handler`` to write them.
It is separate from that plumbing so a new path is one ``case`` here, read without the parsing,
logging and connection handling around it.

Stdlib only and independent of the engine, as the rest of the practice server.
"""

from __future__ import annotations

import contextlib
import email.utils
import functools
import json
import math
import time
import zlib
from datetime import UTC
from urllib.parse import quote, unquote, urlsplit

from poolfetch.core import practice_ranges
from poolfetch.core.practice_http import CHUNK_SIZE, BadRequest, Handler, Query, http_date

MAX_BODY_BYTES = 2**31
MAX_DELAY_MS = 60_000
#: The body of ``/`` and ``/fixed``: exactly 200 bytes.
FIXED_BODY = (b"poolfetch practice server, fixed body. " * 6)[:199] + b"\n"
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_ETAG_EPOCH = 1_704_067_200  # 2024-01-01T00:00:00Z; version V is Last-Modified V days later
_URL_SAFE = "".join(chr(c) for c in range(0x21, 0x7F))


def _num(text: str, limit: int = MAX_BODY_BYTES) -> int:
    if not (text.isascii() and text.isdigit()) or len(text) > 12:
        raise BadRequest(f"not a number: {text!r}")
    value = int(text)
    if value > limit:
        raise BadRequest(f"{value} is above the limit {limit}")
    return value


def _status(text: str, lowest: int, highest: int = 599) -> int:
    code = _num(text, 999)
    if not lowest <= code <= highest:
        raise BadRequest(f"status {code} not allowed here")
    return code


def _arg(query: Query, key: str, default: str = "") -> str:
    values = query.get(key)
    return values[0] if values else default


#: ``zlib`` window bits of the two framings: gzip, and zlib's own (HTTP's ``deflate``).
GZIP_WBITS = 31
DEFLATE_WBITS = 15


@functools.lru_cache(maxsize=64)
def compressed_zeros(size: int, wbits: int = GZIP_WBITS) -> bytes:
    """``size`` zero bytes compressed 1 MiB at a time (1 GiB gives about 1 MiB): a bomb
    for the decoders' bounds, framed as ``wbits`` says."""
    compressor = zlib.compressobj(6, zlib.DEFLATED, wbits)
    step = 1 << 20
    zeros = memoryview(bytes(min(size, step)))
    parts = [compressor.compress(zeros[: min(left, step)]) for left in range(size, 0, -step)]
    return b"".join(parts) + compressor.flush()


class RouteHandler(Handler):
    """The practice server's handler: the paths it answers (listed on ``PracticeServer``)."""

    def _route(self, path: str, query: Query) -> None:
        practice = self.server.practice
        match path.split("/")[1:]:
            case [""] | ["fixed"]:
                self._send(200, FIXED_BODY)
            case ["bytes", size]:
                self._send_pattern(_num(size), _num(size))
            case ["delay", ms_text]:
                ms = min(_num(ms_text, 10**9), MAX_DELAY_MS)
                if practice.stop_event.wait(ms / 1000):
                    self.close_connection = True  # stopping: no answer
                else:
                    self._send(200, f"delayed {ms} ms\n".encode())
            case ["status", code_text]:
                code = _status(code_text, 200)
                extra = [("Location", "/fixed")] if code in _REDIRECTS else []
                self._send(code, f"status {code}\n".encode(), extra)
            case ["fail", count, _]:
                self._fail(_num(count, 10**9), query)
            case ["redirect", hops_text]:
                hops = _num(hops_text, 10**6)
                if hops == 0:
                    self._send(200, b"done")
                    return
                raw_query = urlsplit(self.path).query  # kept, so each chain stays distinct
                location = f"/redirect/{hops - 1}" + (f"?{raw_query}" if raw_query else "")
                self._send(302, f"redirect to {location}\n".encode(), [("Location", location)])
            case ["redirect-to"]:
                status = _status(_arg(query, "status", "302"), 300, 399)
                location = quote(_arg(query, "url"), safe=_URL_SAFE)
                if not location:
                    raise BadRequest("url= is required")
                self._send(status, f"redirect to {location}\n".encode(), [("Location", location)])
            case ["headers"]:
                body = json.dumps(dict(self.headers.items()), indent=2) + "\n"
                self._send(200, body.encode(), content_type="application/json")
            case ["echo"]:
                got = {
                    "method": self.command,
                    "content_type": self.headers.get("Content-Type"),
                    "bytes": self._body_bytes,
                    "sha256": self._body_sha256,
                }
                self._send(200, json.dumps(got).encode() + b"\n", content_type="application/json")
            case ["etag", resource]:
                self._etag(unquote(resource))
            case ["gzip", size]:
                data = compressed_zeros(_num(size))
                self._send(200, data, [("Content-Encoding", "gzip")], "application/octet-stream")
            case ["reset"]:
                self._record(0)
                self._abort()
            case ["reset-mid", size]:
                self._send_pattern(_num(size), _num(size) // 2)
                self._abort()
            case ["stall-headers"]:
                self._record(0)
                self._stall()
            case ["stall-body", size]:
                self._send_pattern(_num(size), _num(size) // 2)
                self._stall()
            case ["large", resource, size]:
                self._large(unquote(resource), _num(size), query)
            case ["short", size]:
                self.close_connection = True  # half the body, then a normal FIN
                self._send_pattern(_num(size), _num(size) // 2)
            case ["_stats"]:
                self._send(200, json.dumps(practice.stats()).encode(), [], "application/json")
            case _:
                self._send(404, b"not found\n")

    def _fail(self, failures: int, query: Query) -> None:
        status = _status(_arg(query, "status", "503"), 200)
        seen = self.server.practice.count_failure(self.path)
        if seen > failures:
            self._send(200, f"ok after {failures} failures\n".encode())
            return
        extra = []
        retry_after = _arg(query, "retry_after")
        if retry_after == "date":
            seconds = _num(_arg(query, "seconds", "1"), 10**6)
            extra.append(("Retry-After", http_date(math.ceil(time.time() + seconds))))
        elif retry_after:
            extra.append(("Retry-After", quote(retry_after, safe=_URL_SAFE)))
        self._send(status, f"failure {seen} of {failures}\n".encode(), extra)

    def _large(self, resource: str, size: int, query: Query) -> None:
        """``/large/ID/N``: N bytes of ID's version, with validators and Range (see
        ``practice_ranges``); ``rate`` trickles them, ``cut`` resets every answer after that
        many bytes (``stall=1``: goes silent instead), ``ranges=0`` ignores Range,
        ``validators=date|none`` sends fewer."""
        version = self.server.practice.version(resource)
        etag, modified = practice_ranges.validators(resource, version, size)
        kind = _arg(query, "validators", "etag")
        sent_etag = etag if kind == "etag" else None
        sent_modified = modified if kind in ("etag", "date") else None
        extra = [("ETag", etag)] if sent_etag else []
        extra += [("Last-Modified", modified)] if sent_modified else []
        if _arg(query, "ranges", "1") == "0":
            answer = practice_ranges.RangeAnswer(200, 0, size)
        else:
            extra.append(("Accept-Ranges", "bytes"))
            answer = practice_ranges.answer_range(
                self.headers.get("Range"),
                self.headers.get("If-Range"),
                size,
                sent_etag,
                sent_modified,
            )
        extra.extend(answer.headers)
        if answer.status == 416:
            self._send(416, b"", extra)
            return
        length = answer.end - answer.start
        self._record(answer.status)
        self.wfile.write(self._head_bytes(answer.status, length, "application/octet-stream", extra))
        if self._head:
            return
        cut_text = _arg(query, "cut")
        cut = min(_num(cut_text), length) if cut_text else length
        if not self._trickle(answer.start, cut, version, _num(_arg(query, "rate", "0"))):
            self.close_connection = True  # the server is stopping
        elif cut < length and _arg(query, "stall") == "1":
            self._stall()
        elif cut < length:
            self._abort()

    def _trickle(self, start: int, count: int, version: int, rate: int) -> bool:
        """Write ``count`` bytes of the body from ``start``, ``rate`` bytes/s (0: at once).
        False if the server began stopping meanwhile."""
        stop = self.server.practice.stop_event
        step = max(1, min(CHUNK_SIZE, rate // 20)) if rate else CHUNK_SIZE
        began = time.monotonic()
        sent = 0
        while sent < count:
            if rate:
                delay = began + sent / rate - time.monotonic()
                if delay > 0 and stop.wait(delay):
                    return False
            size = min(step, count - sent)
            self.wfile.write(practice_ranges.piece(start + sent, size, version))
            sent += size
        return True

    def _etag(self, resource: str) -> None:
        version = self.server.practice.version(resource)
        etag = f'"{version}"'
        modified = _ETAG_EPOCH + version * 86_400
        extra = [("ETag", etag), ("Last-Modified", http_date(modified))]
        if_none_match = self.headers.get("If-None-Match")
        if_modified_since = self.headers.get("If-Modified-Since")
        fresh = False
        if if_none_match is not None:  # RFC 9110: If-Modified-Since is then ignored
            fresh = any(tag.strip() in (etag, "*") for tag in if_none_match.split(","))
        elif if_modified_since is not None:
            with contextlib.suppress(TypeError, ValueError):
                since = email.utils.parsedate_to_datetime(if_modified_since)
                if since.tzinfo is None:
                    since = since.replace(tzinfo=UTC)
                fresh = modified <= since.timestamp()
        if fresh:
            self._send(304, b"", extra)
        else:
            self._send(200, f"resource {resource} version {version}".encode(), extra)
