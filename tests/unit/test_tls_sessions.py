"""TLS session resumption (core/tls_sessions.py) against a small TLS server on loopback.

The server is Python's own ``ssl`` on a thread, with a private CA made by ``trustme``; it records
for every connection whether the handshake resumed a session (``session_reused``), so the tests
look at what the server saw, as the integration tests do with nginx.
"""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests
import trustme

from poolfetch.core.sessions import LeanAdapter
from poolfetch.core.tls_sessions import SessionCache, TlsContexts, new_context

_ANSWER = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"


@dataclass
class TlsServer:
    port: int
    reused: list[bool] = field(default_factory=list)


@contextmanager
def tls_server(
    tmp: Path, version: ssl.TLSVersion = ssl.TLSVersion.TLSv1_3, http: bool = False
) -> Iterator[tuple[TlsServer, Path]]:
    """A TLS server on 127.0.0.1 (certificate for ``localhost`` and 127.0.0.1) that answers each
    connection with one line (or one HTTP response) and records whether it was resumed."""
    ca = trustme.CA()
    cert = ca.issue_cert("localhost", "127.0.0.1")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = context.maximum_version = version
    cert.configure_cert(context)
    ca_file = tmp / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    server = TlsServer(port=listener.getsockname()[1])
    stop = threading.Event()

    def serve_one(conn: socket.socket) -> None:
        try:
            with context.wrap_socket(conn, server_side=True) as tls:
                server.reused.append(tls.session_reused)
                tls.settimeout(5)
                if http:
                    tls.recv(65536)
                    tls.sendall(_ANSWER)
                else:
                    tls.sendall(b"hi\n")
                tls.recv(1)  # until the client closes
        except (OSError, ssl.SSLError):
            pass

    def accept_loop() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(5)
            serve_one(conn)

    thread = threading.Thread(target=accept_loop, daemon=True)
    thread.start()
    try:
        yield server, ca_file
    finally:
        stop.set()
        thread.join(5)
        listener.close()


def _talk(context: ssl.SSLContext, port: int, name: str = "localhost") -> bool:
    """One connection: handshake, read the server's line, close; returns ``session_reused``."""
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname=name) as tls,
    ):
        buffer = bytearray(16)
        tls.recv_into(buffer)
        return tls.session_reused


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_2])
def test_a_second_connection_resumes_the_first_ones_session(
    tmp_path: Path, version: ssl.TLSVersion
) -> None:
    with tls_server(tmp_path, version) as (server, ca):
        context = new_context(verify=True)
        context.load_verify_locations(str(ca))
        client_side = [_talk(context, server.port) for _ in range(3)]
    assert server.reused == [False, True, True]
    assert client_side == [False, True, True]


def test_a_plain_context_does_not_resume(tmp_path: Path) -> None:
    """The server does resume sessions that are offered: without the cache, none are."""
    with tls_server(tmp_path) as (server, ca):
        for _ in range(2):
            _talk(ssl.create_default_context(cafile=str(ca)), server.port)
    assert server.reused == [False, False]


def test_a_session_is_only_offered_to_the_name_it_was_made_for(tmp_path: Path) -> None:
    with tls_server(tmp_path) as (server, ca):
        context = new_context(verify=True)
        context.load_verify_locations(str(ca))
        _talk(context, server.port, "localhost")
        _talk(context, server.port, "127.0.0.1")
        _talk(context, server.port, "127.0.0.1")
    assert server.reused == [False, False, True]


def test_contexts_are_per_verification_settings() -> None:
    contexts = TlsContexts()
    verified = contexts.for_pool({"cert_reqs": "CERT_REQUIRED"})
    assert contexts.for_pool({"cert_reqs": "CERT_REQUIRED"}) is verified
    bundle = contexts.for_pool({"cert_reqs": "CERT_REQUIRED", "ca_certs": "/x/ca.pem"})
    client = contexts.for_pool({"cert_reqs": "CERT_REQUIRED", "cert_file": "/x/c.pem"})
    insecure = contexts.for_pool({"cert_reqs": "CERT_NONE"})
    assert len({id(c) for c in (verified, bundle, client, insecure)}) == 4
    assert verified.verify_mode == ssl.CERT_REQUIRED and verified.check_hostname
    assert insecure.verify_mode == ssl.CERT_NONE and not insecure.check_hostname
    assert not verified.options & ssl.OP_NO_TICKET  # tickets are what TLS 1.3 resumes with


def test_the_session_cache_is_bounded() -> None:
    cache = SessionCache(max_entries=2)
    session = object()
    for port in range(3):
        cache.put(("h", port), session)  # type: ignore[arg-type]
    assert len(cache) == 1 and cache.get(("h", 2)) is session


def _session(tls: TlsContexts) -> requests.Session:
    session = requests.Session()
    session.trust_env = False
    adapter = LeanAdapter(pool_connections=2, pool_maxsize=1, pool_block=True, max_retries=0)
    adapter.tls = tls
    session.mount("https://", adapter)
    return session


def test_requests_through_the_adapter_resume_and_still_verify(tmp_path: Path) -> None:
    """Through ``requests``: every new connection after the first resumes (the server closes
    each one), a certificate from an unknown CA still fails, also after the same host was
    reached with the right CA bundle, and a failed verification saves no session."""
    tls = TlsContexts()
    with tls_server(tmp_path, http=True) as (server, ca):
        url = f"https://localhost:{server.port}/"
        with pytest.raises(requests.exceptions.SSLError, match="certificate verify failed"):
            _session(tls).get(url, timeout=5)  # the default bundle does not know the CA
        sessions = [_session(tls), _session(tls)]  # two workers
        for session in sessions * 2:
            assert session.get(url, timeout=5, verify=str(ca)).text == "ok"
        with pytest.raises(requests.exceptions.SSLError, match="certificate verify failed"):
            _session(tls).get(url, timeout=5)
    # the server records only handshakes that completed: the two refused ones are not there
    assert server.reused == [False, True, True, True]
