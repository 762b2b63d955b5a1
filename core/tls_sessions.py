"""TLS session resumption: a new connection to a host resumes a session an earlier one made.

urllib3 builds every HTTPS connection's ``SSLContext`` afresh and never offers a saved session,
so each connection costs a full handshake (certificate chain sent, verified and a key exchange:
the CPU of many requests), and it reloads the CA bundle for every one. Here one
``ResumingContext`` per set of verification settings is shared by all workers (given to urllib3
as the pool's ``ssl_context``): its ``wrap_socket`` offers the latest session saved for the same
(server name, port), and its sockets save their session once it can be resumed. TLS 1.3 sends
its session tickets after the handshake, so a socket saves its session after its first read of
the answer (by then the tickets have arrived), TLS 1.2 the same way.

Verification is unchanged: urllib3 still sets ``verify_mode``, loads the CA bundle
(``verify``/``REQUESTS_CA_BUNDLE``) and the client certificate on the context it is given, and
checks the host name; a context is never shared by two sets of those settings (``TlsContexts``
keys them), so one pool's settings never leak into another's connections, and a session is only
ever offered to the server name it was verified for. Loading the same files again is skipped.
"""

from __future__ import annotations

import os
import ssl
import sys
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer, StrOrBytesPath, WriteableBuffer

#: Sessions kept per context (server name and port); the cache is cleared when full.
MAX_SESSIONS = 4096
#: What urllib3 offers (``urllib3.util.ssl_.ALPN_PROTOCOLS``), set when the context is made.
_ALPN = ("http/1.1",)

SessionKey = tuple[str, int]


class SessionCache:
    """The latest resumable session per (server name, port); thread-safe, bounded."""

    def __init__(self, max_entries: int = MAX_SESSIONS) -> None:
        self._max = max_entries
        self._lock = threading.Lock()
        self._sessions: dict[SessionKey, ssl.SSLSession] = {}

    def get(self, key: SessionKey) -> ssl.SSLSession | None:
        return self._sessions.get(key)

    def put(self, key: SessionKey, session: ssl.SSLSession) -> None:
        with self._lock:
            if len(self._sessions) >= self._max and key not in self._sessions:
                self._sessions.clear()
            self._sessions[key] = session

    def __len__(self) -> int:
        return len(self._sessions)


class ResumingSocket(ssl.SSLSocket):
    """An ``SSLSocket`` that saves its session in its context's cache after its first read."""

    _resume_cache: SessionCache | None = None
    _resume_key: SessionKey = ("", 0)

    def recv_into(self, buffer: WriteableBuffer, nbytes: int | None = None, flags: int = 0) -> int:
        received = super().recv_into(buffer, nbytes, flags)
        if self._resume_cache is not None:
            self._save_session()
        return received

    def _save_session(self) -> None:
        cache = self._resume_cache
        session = self.session
        if cache is None or session is None:
            return
        # TLS 1.3 sessions are resumable only with a ticket; TLS 1.2 ones also by session id
        if session.has_ticket or self.version() != "TLSv1.3":
            cache.put(self._resume_key, session)
            self._resume_cache = None  # one save per connection


class ResumingContext(ssl.SSLContext):
    """A client ``SSLContext`` that resumes sessions across the connections made with it."""

    sslsocket_class = ResumingSocket
    sessions: SessionCache
    _loaded: set[tuple[Any, ...]]
    _load_lock: threading.Lock
    _alpn: tuple[str, ...] = ()

    def wrap_socket(
        self,
        sock: Any,
        server_side: bool = False,
        do_handshake_on_connect: bool = True,
        suppress_ragged_eofs: bool = True,
        server_hostname: str | bytes | None = None,
        session: ssl.SSLSession | None = None,
    ) -> ssl.SSLSocket:
        key: SessionKey | None = None
        if not server_side and isinstance(server_hostname, str):
            key = (server_hostname, _peer_port(sock))
            if session is None:
                session = self.sessions.get(key)
        wrapped = super().wrap_socket(
            sock,
            server_side=server_side,
            do_handshake_on_connect=do_handshake_on_connect,
            suppress_ragged_eofs=suppress_ragged_eofs,
            server_hostname=server_hostname,
            session=session,
        )
        if key is not None and isinstance(wrapped, ResumingSocket):
            wrapped._resume_key = key
            wrapped._resume_cache = self.sessions
        return wrapped

    def load_verify_locations(
        self,
        cafile: StrOrBytesPath | None = None,
        capath: StrOrBytesPath | None = None,
        cadata: str | ReadableBuffer | None = None,
    ) -> None:
        """Load CA certificates once: urllib3 asks again for every connection."""
        data = cadata if cadata is None or isinstance(cadata, str) else bytes(cadata)
        key = ("ca", cafile, capath, data)
        self._load_once(key, super().load_verify_locations, cafile, capath, cadata)

    def load_cert_chain(
        self,
        certfile: StrOrBytesPath,
        keyfile: StrOrBytesPath | None = None,
        password: Any = None,
    ) -> None:
        """Load the client certificate once (urllib3 asks again for every connection)."""
        if password is not None:  # a callable or secret: not a cache key
            super().load_cert_chain(certfile, keyfile, password)
            return
        self._load_once(("cert", certfile, keyfile), super().load_cert_chain, certfile, keyfile)

    def set_alpn_protocols(self, alpn_protocols: Any) -> None:
        """Set once: urllib3 sets the same list before every connection, and replacing it
        while another thread's connection copies it (``SSL_new``, without the GIL) is a race."""
        wanted = tuple(alpn_protocols)
        with self._load_lock:
            if wanted != self._alpn:
                super().set_alpn_protocols(wanted)
                self._alpn = wanted

    def _load_once(self, key: tuple[Any, ...], load: Any, *args: Any) -> None:
        with self._load_lock:
            if key in self._loaded:
                return
            load(*args)
            self._loaded.add(key)


def _peer_port(sock: Any) -> int:
    try:
        return int(sock.getpeername()[1])
    except (OSError, AttributeError, IndexError, TypeError, ValueError):
        return 0


def new_context(verify: bool) -> ResumingContext:
    """A client context with urllib3's defaults (``create_urllib3_context``: TLS 1.2 or later,
    no compression, host names checked when verifying), session tickets allowed."""
    context = ResumingContext(ssl.PROTOCOL_TLS_CLIENT)
    context.sessions = SessionCache()
    context._loaded = set()
    context._load_lock = threading.Lock()
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.options |= ssl.OP_NO_SSLv2 | ssl.OP_NO_SSLv3 | ssl.OP_NO_COMPRESSION
    context.options &= ~ssl.OP_NO_TICKET
    if sys.version_info >= (3, 13):
        context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN | ssl.VERIFY_X509_STRICT
    context.post_handshake_auth = True
    if verify:
        context.verify_mode = ssl.CERT_REQUIRED
        context.check_hostname = True
    else:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    context.hostname_checks_common_name = False
    context.set_alpn_protocols(_ALPN)
    keylog = os.environ.get("SSLKEYLOGFILE")
    if keylog:
        context.keylog_filename = os.path.expandvars(keylog)
    return context


#: The pool settings (from ``requests``' ``build_connection_pool_key_attributes``) that change
#: how a connection is verified or authenticated: each distinct set gets its own context.
_TLS_POOL_KEYS = ("cert_reqs", "ca_certs", "ca_cert_dir", "cert_file", "key_file", "key_password")


class TlsContexts:
    """One ``ResumingContext`` per set of TLS pool settings, shared by every worker's Session."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._contexts: dict[tuple[Any, ...], ResumingContext] = {}

    def for_pool(self, pool_kwargs: Mapping[str, Any]) -> ResumingContext:
        key = tuple(pool_kwargs.get(name) for name in _TLS_POOL_KEYS)
        context = self._contexts.get(key)
        if context is None:
            with self._lock:
                context = self._contexts.get(key)
                if context is None:
                    verify = pool_kwargs.get("cert_reqs", "CERT_REQUIRED") != "CERT_NONE"
                    context = self._contexts[key] = new_context(verify)
        return context
