"""The practice server's HTTP plumbing: connections, parsing, the request log, writing answers.

``TrackingServer`` is the threading server that numbers, tracks and force-closes its client
connections, so ``PracticeServer.stop()`` returns whatever its handlers are doing. ``Handler``
is one client connection: it reads and digests each request's body, applies the server-wide and
per-client limits, logs the request (``RequestLogEntry``) and writes answers, including the
hostile ones (half a body, a TCP RST, a stall). Which path answers what is not here but in its
subclass ``practice_routes.RouteHandler``: this module is how bytes move, that one is what they
say, so either can change without reading the other.

Stdlib only and independent of the engine, as the rest of the practice server.
"""

from __future__ import annotations

import contextlib
import email.utils
import functools
import hashlib
import math
import select
import socket
import struct
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any, TypeAlias
from urllib.parse import parse_qs, urlsplit

from poolfetch.core import practice_ranges
from poolfetch.core.practice_limits import Verdict

if TYPE_CHECKING:
    from poolfetch.core.practice import PracticeServer

STALL_MAX_S = 60.0
CHUNK_SIZE = 64 * 1024
_PATTERN = practice_ranges.PATTERN  # 64 bytes, shared with the large bodies
_CHUNK = _PATTERN * (CHUNK_SIZE // len(_PATTERN))  # chunks stay aligned on the pattern
_REASONS = {s.value: s.phrase for s in HTTPStatus}
_IDLE_TIMEOUT_S = 120.0
_Request: TypeAlias = socket.socket | tuple[bytes, socket.socket]
Query: TypeAlias = dict[str, list[str]]
_Headers: TypeAlias = Sequence[tuple[str, str]]


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


class BadRequest(Exception):
    """A request the routes cannot answer (a bad number, a missing argument): answered 400."""


@functools.lru_cache(maxsize=8)
def http_date(ts: int) -> str:
    """The HTTP-date (RFC 9110) of a Unix time in whole seconds."""
    return email.utils.formatdate(ts, usegmt=True)


class TrackingServer(ThreadingHTTPServer):
    """ThreadingHTTPServer that numbers, tracks and can force-close its client connections."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024

    def __init__(
        self, practice: PracticeServer, address: tuple[str, int], handler: type[Handler]
    ) -> None:
        self.practice = practice
        self.connections = 0
        self._clients: dict[socket.socket, int] = {}
        self._handler_threads: set[threading.Thread] = set()
        self._track = threading.Lock()
        super().__init__(address, handler)

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


class Handler(BaseHTTPRequestHandler):
    """One client connection: parses its requests and answers them through ``_route``, which a
    subclass (``practice_routes.RouteHandler``) defines; the rest are the tools it answers with."""

    protocol_version = "HTTP/1.1"
    server_version = "poolfetch-practice/1"
    sys_version = ""
    timeout = _IDLE_TIMEOUT_S
    server: TrackingServer

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

    def _route(self, path: str, query: Query) -> None:
        """Answer one request for ``path`` (without the query, which is parsed into ``query``)."""
        raise NotImplementedError("a subclass answers the paths (practice_routes.RouteHandler)")

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
                after = http_date(math.ceil(time.time() + 1))
            self._send(429, b"rate limited\n", [("Retry-After", after)])
            return
        if parts.path != "/_stats" and practice.limits.limits.active:
            self._verdict = practice.limits.enter(self.client_address[0])
        try:
            if self._verdict is not None and not self._pass_limits(self._verdict):
                return
            self._route(parts.path, parse_qs(parts.query))
        except BadRequest as exc:
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
            f"Server: {self.server_version}\r\nDate: {http_date(int(time.time()))}\r\n"
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
