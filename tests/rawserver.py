"""A raw-socket HTTP test server for answers no well-behaved server would send.

``RawServer(behaviour)`` listens on 127.0.0.1 (a free port), reads each request head (up to the
blank line, at most 64 KiB) and hands the socket and the head to ``behaviour``, which writes
whatever bytes it likes; the connection is closed when it returns. Every connection is tracked
so ``stop()`` can close them all and join every thread within a bounded time, whatever the
behaviour is doing. The ready behaviours below are the malformed answers the hostile tests need.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable
from types import TracebackType

from poolfetch.core.practice_routes import DEFLATE_WBITS, compressed_zeros

#: ``behaviour(sock, request_head)``: write the answer to ``sock`` (it is closed afterwards).
Behaviour = Callable[[socket.socket, bytes], None]

MAX_HEAD_BYTES = 64 * 1024
_READ_TIMEOUT_S = 5.0
_ACCEPT_POLL_S = 0.1
_STOP_JOIN_S = 2.0


class RawServer:
    """A threaded TCP server on 127.0.0.1 whose answers are raw bytes from ``behaviour``.

    Use it as a context manager. ``requests`` holds every request head received, ``connections``
    counts accepted connections. A behaviour that raises ``OSError`` (the client left) is fine.
    """

    def __init__(self, behaviour: Behaviour) -> None:
        self._behaviour = behaviour
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(_ACCEPT_POLL_S)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._clients: set[socket.socket] = set()
        self._threads: set[threading.Thread] = set()
        self.connections = 0
        self.requests: list[bytes] = []
        self._acceptor = threading.Thread(target=self._accept_loop, name="rawserver", daemon=True)

    @property
    def port(self) -> int:
        return int(self._listener.getsockname()[1])

    @property
    def url(self) -> str:
        """Base URL without a trailing slash, e.g. ``http://127.0.0.1:41234``."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> RawServer:
        self._acceptor.start()
        return self

    def stop(self) -> None:
        """Stop accepting, close every client socket, join all threads (about 2 s at most)."""
        if self._stop.is_set():
            return
        self._stop.set()
        deadline = time.monotonic() + _STOP_JOIN_S
        if self._acceptor.is_alive():
            self._acceptor.join(max(0.0, deadline - time.monotonic()))
        self._listener.close()
        with self._lock:
            clients = list(self._clients)
            threads = list(self._threads)
        for sock in clients:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def __enter__(self) -> RawServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                sock, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            thread = threading.Thread(target=self._serve, args=(sock,), daemon=True)
            with self._lock:
                self.connections += 1
                self._clients.add(sock)
                self._threads.add(thread)
            thread.start()

    def _serve(self, sock: socket.socket) -> None:
        try:
            sock.settimeout(_READ_TIMEOUT_S)
            head = _read_head(sock)
            if head:
                with self._lock:
                    self.requests.append(head)
                self._behaviour(sock, head)
        except OSError:
            pass  # the client left, or stop() closed the socket under us
        finally:
            with self._lock:
                self._clients.discard(sock)
                self._threads.discard(threading.current_thread())
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()


def _read_head(sock: socket.socket) -> bytes:
    """The request head up to and including CRLFCRLF (at most MAX_HEAD_BYTES; b"" if none)."""
    data = b""
    while b"\r\n\r\n" not in data and len(data) < MAX_HEAD_BYTES:
        chunk = sock.recv(4096)
        if not chunk:
            return b""
        data += chunk
    return data[: data.find(b"\r\n\r\n") + 4] if b"\r\n\r\n" in data else data


# -- ready behaviours -------------------------------------------------------------------------


def canned(data: bytes) -> Behaviour:
    """Send ``data`` exactly as given, whatever was asked."""

    def behaviour(sock: socket.socket, head: bytes) -> None:
        sock.sendall(data)

    return behaviour


def broken_chunked(sock: socket.socket, head: bytes) -> None:
    """A chunked 200: one good chunk, then a chunk-size line that is not hex, then close."""
    sock.sendall(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\nzz\r\nnot a chunk\r\n"
    )


def bad_status_line(sock: socket.socket, head: bytes) -> None:
    """A status line whose code is not a number."""
    sock.sendall(b"HTTP/1.1 abc OK\r\n\r\n")


def garbage_status_line(sock: socket.socket, head: bytes) -> None:
    """Not HTTP at all."""
    sock.sendall(b"garbage\r\n\r\n")


def huge_headers(mb: int, line_bytes: int = 8192) -> Behaviour:
    """A 200 status line, then ``mb`` MiB of ``X-Filler: aaaa…`` header lines (never a body)."""
    line = b"X-Filler: " + b"a" * max(1, line_bytes - 12) + b"\r\n"
    count = max(1, (mb << 20) // len(line))

    def behaviour(sock: socket.socket, head: bytes) -> None:
        sock.sendall(b"HTTP/1.1 200 OK\r\n")
        for _ in range(count):
            sock.sendall(line)
        sock.sendall(b"Content-Length: 0\r\n\r\n")

    return behaviour


def headers_then_stall(length: int) -> Behaviour:
    """A 200 head announcing ``length`` body bytes, then silence until the client leaves."""
    head = f"HTTP/1.1 200 OK\r\nContent-Length: {length}\r\n\r\n".encode()

    def behaviour(sock: socket.socket, request: bytes) -> None:
        sock.sendall(head)
        while sock.recv(4096):  # b"": the client closed; stop() and the read timeout end it too
            pass

    return behaviour


def ok_body(body: bytes) -> Behaviour:
    """A plain 200 with ``body`` (the request head is kept in ``RawServer.requests``)."""
    head = f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"

    def behaviour(sock: socket.socket, request: bytes) -> None:
        sock.sendall(head.encode() + body)

    return behaviour


def deflate_zeros(size: int) -> bytes:
    """``size`` zero bytes in HTTP's ``deflate`` framing (1 GiB gives about 1 MiB)."""
    return compressed_zeros(size, DEFLATE_WBITS)


def deflate_bomb(size: int) -> Behaviour:
    """A 200 with ``Content-Encoding: deflate``: ``size`` zeros, sent compressed (with length)."""
    return encoded_body("deflate", deflate_zeros(size), "application/octet-stream")


def encoded_body(coding: str, body: bytes, content_type: str = "text/plain") -> Behaviour:
    """A 200 whose ``body`` is sent as is, labelled ``Content-Encoding: coding``."""
    head = (
        f"HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\n"
        f"Content-Encoding: {coding}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()

    def behaviour(sock: socket.socket, request: bytes) -> None:
        sock.sendall(head + body)

    return behaviour


def brotli_zeros(size: int) -> bytes:
    """``size`` zero bytes brotli-compressed 1 MiB at a time (1 GiB gives about 190 KiB)."""
    import brotli

    compressor = brotli.Compressor(quality=1)
    step = 1 << 20
    zeros = bytes(min(size, step))
    parts = [compressor.process(zeros[: min(left, step)]) for left in range(size, 0, -step)]
    return b"".join(parts) + compressor.finish()


def zstd_zeros(size: int) -> bytes:
    """``size`` zero bytes zstd-compressed 1 MiB at a time (1 GiB gives about 32 KiB)."""
    from backports import zstd

    compressor = zstd.ZstdCompressor(level=1)
    step = 1 << 20
    zeros = bytes(min(size, step))
    parts = [compressor.compress(zeros[: min(left, step)]) for left in range(size, 0, -step)]
    return b"".join(parts) + compressor.flush()
