"""The practice server: a local HTTP/1.1 keep-alive server that acts like the servers users fetch.

Tests, benchmarks, ``poolfetch serve`` and ``poolfetch demo`` all use this one server, so what
the tests assert is what the demo shows and what the benchmarks measure. It listens on loopback
and answers with fixed, large, slow, failing, redirecting, conditional, gzipped, reset and
stalled responses (the paths are listed on ``PracticeServer``). It can rate-limit itself
server-wide (429 with Retry-After), and it records every request it received (``requests()``),
so a test can check what a client really did: how many connections, which headers, how fast.

Stdlib only, and independent of the engine (its own token bucket), so it checks the engine
instead of sharing its bugs.

Per client address it can also cap requests being served, count fixed or moving windows that
announce their quota in headers, or refuse like a token bucket without burst
(``ServerOptions.limits``, see ``core/practice_limits.py``).
"""

from __future__ import annotations

import contextlib
import email.utils
import functools
import hashlib
import json
import math
import select
import socket
import struct
import sys
import threading
import time
import zlib
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, TypeAlias
from urllib.parse import parse_qs, quote, unquote, urlsplit

from poolfetch.core import practice_ranges
from poolfetch.core.practice_limits import NO_LIMITS, ServerLimiter, ServerLimits, Verdict

MAX_LOG_ENTRIES = 1_000_000
MAX_BODY_BYTES = 2**31
MAX_DELAY_MS = 60_000
STALL_MAX_S = 60.0
CHUNK_SIZE = 64 * 1024
#: The body of ``/`` and ``/fixed``: exactly 200 bytes.
FIXED_BODY = (b"poolfetch practice server, fixed body. " * 6)[:199] + b"\n"
_PATTERN = practice_ranges.PATTERN  # 64 bytes, shared with the large bodies
_CHUNK = _PATTERN * (CHUNK_SIZE // len(_PATTERN))  # chunks stay aligned on the pattern
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_REASONS = {s.value: s.phrase for s in HTTPStatus}
_ETAG_EPOCH = 1_704_067_200  # 2024-01-01T00:00:00Z; version V is Last-Modified V days later
_URL_SAFE = "".join(chr(c) for c in range(0x21, 0x7F))
_IDLE_TIMEOUT_S = 120.0
_POLL_S = 0.1
_STOP_JOIN_S = 1.5
_Request: TypeAlias = socket.socket | tuple[bytes, socket.socket]
_Query: TypeAlias = dict[str, list[str]]
_Headers: TypeAlias = Sequence[tuple[str, str]]


@dataclass(frozen=True, slots=True)
class ServerOptions:
    """How the practice server listens and whether it rate-limits itself."""

    host: str = "127.0.0.1"
    port: int = 0  # 0: pick a free port
    rate_limit: float | None = None  # server-wide requests/s over all paths; excess -> 429
    rate_burst: int = 1  # token bucket capacity for rate_limit (starts full)
    retry_after: str = "1"  # Retry-After of rate-limit 429s; "date": an HTTP-date 1 s ahead
    quiet: bool = True  # no per-request log lines on stderr
    limits: ServerLimits = NO_LIMITS  # per-client limiters (core/practice_limits.py)

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port out of range: {self.port}")
        if self.rate_limit is not None and not self.rate_limit > 0:
            raise ValueError(f"rate_limit must be > 0, got {self.rate_limit}")
        if self.rate_burst < 1:
            raise ValueError(f"rate_burst must be >= 1, got {self.rate_burst}")


@dataclass(frozen=True, slots=True)
class RequestLogEntry:
    """One request as the server saw it; ``status`` 0 means no status line was sent."""

    time: float  # time.monotonic() when the request line was read
    path: str  # full path including the query
    connection: int  # TCP connection id: 1, 2, 3 ... in accept order
    status: int
    headers: dict[str, str]  # request headers as received (names as sent)
    method: str = "GET"
    body_sha256: str | None = None  # hex SHA-256 of the request body, None without one
    body_bytes: int = 0
    content_type: str | None = None  # the request's Content-Type


class _BadRequest(Exception):
    pass


@functools.lru_cache(maxsize=8)
def _http_date(ts: int) -> str:
    return email.utils.formatdate(ts, usegmt=True)


def _num(text: str, limit: int = MAX_BODY_BYTES) -> int:
    if not (text.isascii() and text.isdigit()) or len(text) > 12:
        raise _BadRequest(f"not a number: {text!r}")
    value = int(text)
    if value > limit:
        raise _BadRequest(f"{value} is above the limit {limit}")
    return value


def _status(text: str, lowest: int, highest: int = 599) -> int:
    code = _num(text, 999)
    if not lowest <= code <= highest:
        raise _BadRequest(f"status {code} not allowed here")
    return code


def _arg(query: _Query, key: str, default: str = "") -> str:
    values = query.get(key)
    return values[0] if values else default


@functools.lru_cache(maxsize=64)
def _gzip_zeros(size: int) -> bytes:
    """``size`` zero bytes gzip-compressed 1 MiB at a time (1 GiB gives about 1 MiB)."""
    compressor = zlib.compressobj(6, zlib.DEFLATED, 31)
    step = 1 << 20
    zeros = memoryview(bytes(min(size, step)))
    parts = [compressor.compress(zeros[: min(left, step)]) for left in range(size, 0, -step)]
    return b"".join(parts) + compressor.flush()


class _Server(ThreadingHTTPServer):
    """ThreadingHTTPServer that numbers, tracks and can force-close its client connections."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024

    def __init__(self, practice: PracticeServer, address: tuple[str, int]) -> None:
        self.practice = practice
        self.connections = 0
        self._clients: dict[socket.socket, int] = {}
        self._handler_threads: set[threading.Thread] = set()
        self._track = threading.Lock()
        super().__init__(address, _Handler)

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, address = super().get_request()
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self._track:
            self.connections += 1
            self._clients[sock] = self.connections
        return sock, address

    def connection_id(self, sock: socket.socket) -> int:
        with self._track:
            return self._clients.get(sock, 0)

    def process_request_thread(self, request: _Request, client_address: Any) -> None:
        me = threading.current_thread()
        with self._track:
            self._handler_threads.add(me)
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self._track:
                self._handler_threads.discard(me)

    def close_request(self, request: _Request) -> None:
        if isinstance(request, socket.socket):
            with self._track:
                self._clients.pop(request, None)
        super().close_request(request)

    def handle_error(self, request: _Request, client_address: Any) -> None:
        error = sys.exc_info()[1]
        if (
            self.practice.options.quiet
            or self.practice.stop_event.is_set()
            or isinstance(error, (ConnectionError, TimeoutError))
        ):
            return
        super().handle_error(request, client_address)

    def close_clients(self) -> None:
        """Wake every handler blocked on its socket (shutdown) and close the sockets."""
        with self._track:
            clients = list(self._clients)
        for sock in clients:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def join_handlers(self, deadline: float) -> None:
        with self._track:
            threads = list(self._handler_threads)
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))


class _Handler(BaseHTTPRequestHandler):
    """One client connection: parses its requests and answers them (see ``_route``)."""

    protocol_version = "HTTP/1.1"
    server_version = "poolfetch-practice/1"
    sys_version = ""
    timeout = _IDLE_TIMEOUT_S
    server: _Server

    def setup(self) -> None:
        super().setup()
        self._conn_id = self.server.connection_id(self.connection)
        self._started = time.monotonic()
        self._head = False
        self._verdict: Verdict | None = None  # the per-client limiters' answer being served

    def parse_request(self) -> bool:
        self._started = time.monotonic()  # the request line has just been read
        return super().parse_request()

    def log_message(self, format: str, *args: Any) -> None:
        if not self.server.practice.options.quiet:
            super().log_message(format, *args)

    def do_GET(self) -> None:
        self._dispatch(head=False)

    def do_HEAD(self) -> None:
        self._dispatch(head=True)

    def do_POST(self) -> None:
        self._dispatch(head=False)

    do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_POST

    # -- plumbing -----------------------------------------------------------------------------

    def _dispatch(self, head: bool) -> None:
        self._head = head
        practice = self.server.practice
        if not self._discard_body():
            return
        parts = urlsplit(self.path)
        if parts.path != "/_stats" and not practice.admit():
            after = practice.options.retry_after
            if after == "date":
                after = _http_date(math.ceil(time.time() + 1))
            self._send(429, b"rate limited\n", [("Retry-After", after)])
            return
        if parts.path != "/_stats" and practice.limits.limits.active:
            self._verdict = practice.limits.enter(self.client_address[0])
        try:
            if self._verdict is not None and not self._pass_limits(self._verdict):
                return
            self._route(parts.path, parse_qs(parts.query))
        except _BadRequest as exc:
            self._send(400, f"bad request: {exc}\n".encode())
        finally:
            self._leave_limits()

    def _pass_limits(self, verdict: Verdict) -> bool:
        """Answer a refusal, or wait the backend delay; False when the request is done."""
        if verdict.refused:
            self._send(verdict.status, verdict.body)
            return False
        delay = self.server.practice.limits.limits.delay_ms
        if delay and self.server.practice.stop_event.wait(delay / 1000):
            self.close_connection = True  # stopping: no answer
            return False
        return True

    def _leave_limits(self) -> None:
        """Free the connection-cap slot: called as the answer is written, so a client that has
        its answer never finds its own request still counted."""
        verdict, self._verdict = self._verdict, None
        if verdict is not None:
            self.server.practice.limits.leave(verdict)

    def _discard_body(self) -> bool:
        """Read the request body (its digest and size go to the log) without keeping it."""
        self._body_sha256: str | None = None
        self._body_bytes = 0
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            self.close_connection = True  # not worth parsing: answer, then close
        length_text = self.headers.get("Content-Length")
        if length_text is None:
            return True
        length_text = length_text.strip()
        length = int(length_text) if length_text.isascii() and length_text.isdigit() else -1
        if length < 0:
            self.close_connection = True
            self._send(400, b"bad Content-Length\n")
            return False
        hasher = hashlib.sha256()
        self._body_bytes = length
        while length > 0:
            chunk = self.rfile.read(min(length, CHUNK_SIZE))
            if not chunk:
                self.close_connection = True
                return False
            hasher.update(chunk)
            length -= len(chunk)
        if self._body_bytes or self.command not in ("GET", "HEAD"):
            self._body_sha256 = hasher.hexdigest()
        return True

    def _record(self, status: int) -> None:
        entry = RequestLogEntry(
            self._started,
            self.path,
            self._conn_id,
            status,
            dict(self.headers.items()),
            self.command,
            getattr(self, "_body_sha256", None),
            getattr(self, "_body_bytes", 0),
            self.headers.get("Content-Type"),
        )
        self.server.practice.record(entry)
        self._leave_limits()
        if not self.server.practice.options.quiet:
            self.log_request(status)

    def _head_bytes(
        self, status: int, length: int | None, content_type: str | None, extra: _Headers
    ) -> bytes:
        lines = [
            f"HTTP/1.1 {status} {_REASONS.get(status, 'Unknown')}\r\n"
            f"Server: {self.server_version}\r\nDate: {_http_date(int(time.time()))}\r\n"
        ]
        if content_type is not None:
            lines.append(f"Content-Type: {content_type}\r\n")
        if length is not None:
            lines.append(f"Content-Length: {length}\r\n")
        lines.extend(f"{name}: {value}\r\n" for name, value in extra)
        if self._verdict is not None:  # the quota a limiter announces, on every answer
            lines.extend(f"{name}: {value}\r\n" for name, value in self._verdict.headers)
        if self.close_connection:
            lines.append("Connection: close\r\n")
        lines.append("\r\n")
        return "".join(lines).encode("latin-1")

    def _send(
        self,
        status: int,
        body: bytes,
        extra: _Headers = (),
        content_type: str = "text/plain; charset=utf-8",
    ) -> None:
        """Answer with an in-memory body, head and body in one write."""
        if status in (204, 304) or 100 <= status < 200:
            body = b""
        length = None if status == 204 else len(body)  # RFC 9110: no Content-Length on 204
        head = self._head_bytes(status, length, content_type if body else None, extra)
        self._record(status)
        self.wfile.write(head if self._head else head + body)

    def _send_pattern(self, length: int, send: int) -> None:
        """A 200 announcing ``length`` pattern bytes; write the first ``send`` of them."""
        head = self._head_bytes(200, length, "application/octet-stream", ())
        self._record(200)
        if self._head:
            self.wfile.write(head)
            return
        done = min(send, CHUNK_SIZE)
        self.wfile.write(head + _CHUNK[:done])
        view = memoryview(_CHUNK)
        while done < send:
            step = min(send - done, CHUNK_SIZE)
            self.wfile.write(view[:step])
            done += step

    def _abort(self) -> None:
        """Close the connection with a TCP RST (SO_LINGER 0), no further bytes."""
        self.close_connection = True
        sock = self.connection
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.rfile.close()  # drop the makefile reference so close() really closes the fd
        sock.close()

    def _stall(self) -> None:
        """Send nothing until the server stops, the client leaves, or STALL_MAX_S pass."""
        self.close_connection = True
        stop = self.server.practice.stop_event
        deadline = time.monotonic() + STALL_MAX_S
        poller = select.poll()
        poller.register(self.connection, select.POLLIN)
        while (left := deadline - time.monotonic()) > 0 and not stop.wait(min(left, 0.2)):
            if poller.poll(0):  # readable: either a pipelined request or the client is gone
                try:
                    if not self.connection.recv(1, socket.MSG_PEEK):
                        return
                except OSError:
                    return

    # -- routes ---------------------------------------------------------------------------------

    def _route(self, path: str, query: _Query) -> None:
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
                    raise _BadRequest("url= is required")
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
                data = _gzip_zeros(_num(size))
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

    def _fail(self, failures: int, query: _Query) -> None:
        status = _status(_arg(query, "status", "503"), 200)
        seen = self.server.practice.count_failure(self.path)
        if seen > failures:
            self._send(200, f"ok after {failures} failures\n".encode())
            return
        extra = []
        retry_after = _arg(query, "retry_after")
        if retry_after == "date":
            seconds = _num(_arg(query, "seconds", "1"), 10**6)
            extra.append(("Retry-After", _http_date(math.ceil(time.time() + seconds))))
        elif retry_after:
            extra.append(("Retry-After", quote(retry_after, safe=_URL_SAFE)))
        self._send(status, f"failure {seen} of {failures}\n".encode(), extra)

    def _large(self, resource: str, size: int, query: _Query) -> None:
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
        extra = [("ETag", etag), ("Last-Modified", _http_date(modified))]
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


class PracticeServer:
    """A threaded HTTP/1.1 keep-alive server on loopback that records what it receives.

    Paths (any method: GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS; a request body is read, and
    its method, SHA-256, size and Content-Type go to the request log, ``/echo`` answers them):
    ``/`` and ``/fixed`` (200 bytes), ``/bytes/N``, ``/delay/MS``, ``/status/CODE``,
    ``/fail/K/ID?status=503&retry_after=S|date&seconds=S`` (the first K requests of that exact
    path fail), ``/redirect/N``, ``/redirect-to?url=URL&status=302``, ``/headers`` (JSON),
    ``/echo`` (JSON), ``/etag/ID`` (conditional GET, see ``set_version``), ``/gzip/N``,
    ``/reset`` (RST), ``/reset-mid/N``, ``/stall-headers``, ``/stall-body/N``, ``/short/N``,
    ``/large/ID/N?rate=B&cut=K&stall=1&ranges=0&validators=date|none`` (Range, a trickle)
    and ``/_stats``.
    Use it as a context manager, or ``start()`` / ``stop()``. A stopped server cannot restart.
    """

    def __init__(self, options: ServerOptions | None = None) -> None:
        self.options = options if options is not None else ServerOptions()
        self.stop_event = threading.Event()
        self._lock = threading.Lock()
        self._log: deque[RequestLogEntry] = deque(maxlen=MAX_LOG_ENTRIES)
        self._requests = 0
        self.limits = ServerLimiter(self.options.limits)
        self._versions: dict[str, int] = {}
        self._failures: dict[str, int] = {}
        self._tokens = float(self.options.rate_burst)  # the rate-limit bucket starts full
        self._refilled = time.monotonic()
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None
        self._serving = False
        self._stopped = False

    # -- lifecycle ------------------------------------------------------------------------

    def _bind(self) -> _Server:
        if self._stopped:
            raise RuntimeError("this PracticeServer was stopped; create a new one")
        if self._httpd is None:
            self._httpd = _Server(self, (self.options.host, self.options.port))
        return self._httpd

    def start(self) -> PracticeServer:
        """Bind and serve from a daemon thread; returns self (a no-op if already serving)."""
        httpd = self._bind()
        if not self._serving:
            self._serving = True
            self._thread = threading.Thread(
                target=httpd.serve_forever,
                args=(_POLL_S,),
                name=f"practice-server-{self.port}",
                daemon=True,
            )
            self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve until ``stop()`` (or Ctrl-C, which the caller handles) in this thread.

        After ``start()`` this just blocks until the server is stopped.
        """
        if self._serving:
            while not self.stop_event.wait(0.5):
                pass
            return
        httpd = self._bind()
        self._serving = True
        httpd.serve_forever(_POLL_S)

    def stop(self) -> None:
        """Stop listening, close every client connection (stalled ones too), join the threads.

        Idempotent; returns within about two seconds whatever the handlers are doing.
        """
        if self._stopped:
            return
        self._stopped = True
        self.stop_event.set()
        httpd = self._httpd
        if httpd is None:
            return
        deadline = time.monotonic() + _STOP_JOIN_S
        if self._serving:
            httpd.shutdown()
        httpd.server_close()
        httpd.close_clients()
        if self._thread is not None:
            self._thread.join(max(0.0, deadline - time.monotonic()))
        httpd.join_handlers(deadline)

    def __enter__(self) -> PracticeServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The bound port (the configured one before ``start()``)."""
        if self._httpd is None:
            return self.options.port
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        """Base URL without a trailing slash, e.g. ``http://127.0.0.1:41234``."""
        return f"http://{self.options.host}:{self.port}"

    # -- what tests look at ---------------------------------------------------------------

    @property
    def connections_opened(self) -> int:
        """TCP connections accepted so far."""
        return 0 if self._httpd is None else self._httpd.connections

    def requests(self) -> list[RequestLogEntry]:
        """A copy of the request log (the last MAX_LOG_ENTRIES requests), oldest first."""
        with self._lock:
            return list(self._log)

    def reset_log(self) -> None:
        """Forget the logged requests (counters, failures and versions are kept)."""
        with self._lock:
            self._log.clear()

    def set_version(self, id: str, version: int) -> None:
        """Set the version ``/etag/ID`` serves (default 1): new ETag and Last-Modified."""
        with self._lock:
            self._versions[id] = version

    def stats(self) -> dict[str, int]:
        """What ``/_stats`` answers: connections accepted, requests other than ``/_stats``,
        and what the per-client limiters accepted and refused (``ServerLimiter.stats``)."""
        with self._lock:
            counts = {"connections": self.connections_opened, "requests": self._requests}
        return {**counts, **self.limits.stats()}

    # -- used by the handlers -------------------------------------------------------------

    def record(self, entry: RequestLogEntry) -> None:
        """Append to the request log (called just before the answer is written)."""
        with self._lock:
            self._log.append(entry)
            if entry.path.partition("?")[0] != "/_stats":
                self._requests += 1

    def admit(self) -> bool:
        """Take a token from the server-wide rate limit (always True without one)."""
        rate = self.options.rate_limit
        if rate is None:
            return True
        with self._lock:
            now = time.monotonic()
            elapsed, self._refilled = now - self._refilled, now
            self._tokens = min(self.options.rate_burst, self._tokens + elapsed * rate)
            if self._tokens < 1.0 - 1e-9:
                return False
            self._tokens -= 1.0
            return True

    def count_failure(self, key: str) -> int:
        """Count one more request of a ``/fail`` path; returns the count including it."""
        with self._lock:
            seen = self._failures.get(key, 0) + 1
            self._failures[key] = seen
            return seen

    def version(self, id: str) -> int:
        """The current version of ``/etag/ID``."""
        with self._lock:
            return self._versions.get(id, 1)
