"""The Session of each worker thread, built once and kept for the whole run.

Each worker builds one ``requests.Session`` before its first job (``SessionFactory.init_worker``,
the executor's initializer) and keeps it in a ``threading.local``. Its ``HTTPAdapter``
(``LeanAdapter``) keeps keep-alive pools for ``--pool-size`` hosts (``pool_connections``),
blocks instead of opening extra sockets (``pool_block=True``), never retries on its own
(``max_retries=0``: tenacity is the one retry layer), shares TLS contexts that resume sessions
(``tls_sessions``) and skips what poolfetch never uses of a response (cookies, the text-encoding
guess). Separate from ``transport.py``, which runs one attempt on whatever Session this gives.
"""

from __future__ import annotations

import threading
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from requests.cookies import RequestsCookieJar
from requests.structures import CaseInsensitiveDict

from poolfetch.core.config import FetchConfig
from poolfetch.core.tls_sessions import TlsContexts


class NoCookies(RequestsCookieJar):
    """A jar that never stores or sends a cookie: results must not depend on which worker
    fetched what before. (Also skips the cookie parsing of every response.)"""

    def extract_cookies(self, response: Any, request: Any) -> None:
        return None

    def add_cookie_header(self, request: Any) -> None:
        return None


class LeanAdapter(HTTPAdapter):
    """``HTTPAdapter`` whose responses skip the cookie jar and text-encoding guess, and whose
    HTTPS pools share TLS contexts that resume sessions (``tls_sessions``).

    ``build_response`` is the adapter's extension point; poolfetch keeps no cookies and never
    decodes a body as text, and those two steps were about a twentieth of an attempt's CPU.
    """

    tls: TlsContexts | None = None

    def build_connection_pool_key_attributes(
        self, request: requests.PreparedRequest, verify: bool | str, cert: Any = None
    ) -> tuple[Any, Any]:
        host_params, pool_kwargs = super().build_connection_pool_key_attributes(
            request, verify, cert
        )
        if self.tls is not None and host_params.get("scheme") == "https":
            pool_kwargs["ssl_context"] = self.tls.for_pool(pool_kwargs)
        return host_params, pool_kwargs

    def build_response(self, req: requests.PreparedRequest, resp: Any) -> requests.Response:
        response = requests.Response()
        response.status_code = resp.status
        response.headers = CaseInsensitiveDict(resp.headers)
        response.raw = resp
        response.reason = resp.reason
        url = req.url
        response.url = url.decode("utf-8") if isinstance(url, bytes) else (url or "")
        response.request = req
        response.connection = self
        return response


class SessionFactory:
    """Builds the one Session of each worker thread and counts them (reuse is measured)."""

    def __init__(self, config: FetchConfig, version: str) -> None:
        self._config = config
        self._local = threading.local()
        self._lock = threading.Lock()
        self.sessions_built = 0
        headers = {"User-Agent": config.user_agent or f"poolfetch/{version}"}
        for name, value in config.headers:
            headers[name] = value
        self._headers = headers
        self._tls = TlsContexts()

    def init_worker(self) -> None:
        """Executor initializer: build this thread's Session before its first job."""
        session = requests.Session()
        session.trust_env = False  # resolved per host by EnvironmentCache instead
        session.cookies = NoCookies()
        session.headers.update(self._headers)
        adapter = LeanAdapter(
            pool_connections=self._config.effective_pool_size,
            pool_maxsize=1,
            pool_block=True,
            max_retries=0,
        )
        adapter.tls = self._tls
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        self._local.session = session
        with self._lock:
            self.sessions_built += 1

    def session(self) -> requests.Session:
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            self.init_worker()
            session = self._local.session
        return session
