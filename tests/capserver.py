"""A loopback server that caps requests in flight per client, as nginx ``limit_conn`` does.

Each request beyond ``cap`` in flight at once is answered at once (``503`` without
``Retry-After`` by default, or a connection reset with ``reset=True``); the others wait
``delay`` seconds (the backend) and get ``200``. It counts what it answered and the most
requests it ever had in flight, so a test can check what the client did.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any


class CapServer:
    """``with CapServer(cap=4, delay=0.1) as srv: srv.url``; stopped on exit."""

    def __init__(self, cap: int, delay: float, reset: bool = False, host: str = "127.0.0.1"):
        self.cap = cap
        self.delay = delay
        self.reset = reset
        self.ok = 0
        self.refused = 0
        self.peak = 0
        self.refusals: list[float] = []
        self._in_flight = 0
        self._lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                with owner._lock:
                    admitted = owner._in_flight < owner.cap
                    if admitted:
                        owner._in_flight += 1
                        owner.peak = max(owner.peak, owner._in_flight)
                    else:
                        owner.refused += 1
                        owner.refusals.append(time.monotonic())
                if not admitted:
                    if owner.reset:
                        linger = struct.pack("ii", 1, 0)
                        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
                        self.close_connection = True
                        self.connection.close()  # an RST now, before socketserver's FIN
                        return
                    self._answer(503, b"too many connections\n")
                    return
                try:
                    time.sleep(owner.delay)
                finally:
                    # done before the answer is written: a client cannot start its next
                    # request on a slot the server still counts (nginx frees it in the same
                    # event-loop step)
                    with owner._lock:
                        owner._in_flight -= 1
                        owner.ok += 1
                self._answer(200, b"ok\n")

            def _answer(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        class Server(ThreadingHTTPServer):
            request_queue_size = 128  # socketserver's 5 would delay connections by a SYN retry
            daemon_threads = True

        self._server = Server((host, 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> CapServer:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)
