"""Thread-local sessions and one attempt on the wire.

Each worker thread builds one ``requests.Session`` in the executor's initializer and keeps it for
the whole run (``threading.local``): its ``HTTPAdapter`` keeps keep-alive pools for
``--pool-size`` hosts (``pool_connections``), blocks instead of opening extra sockets
(``pool_block=True``) and never retries on its own (``max_retries=0``: tenacity is the one retry
layer). ``send_once`` does exactly one request (redirects followed inside it), streams the body
to a temporary file or discards it, and maps every ``requests``/``urllib3`` exception into the
``poolfetch.core.errors`` tree: this is the only module that knows those exceptions.

The environment (proxy variables, ``NO_PROXY``, ``.netrc``, ``REQUESTS_CA_BUNDLE``) is honoured
as ``requests`` would, but resolved once per host instead of on every request.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import requests
import urllib3.exceptions
from requests.adapters import HTTPAdapter
from requests.cookies import RequestsCookieJar
from requests.structures import CaseInsensitiveDict

from poolfetch.core.config import FetchConfig
from poolfetch.core.envcache import EnvironmentCache
from poolfetch.core.errors import (
    BodyTooLargeError,
    ConnectError,
    FetchError,
    OutputError,
    ProtocolError,
    RedirectError,
    RequestTimeout,
)
from poolfetch.core.models import AttemptOutcome, FetchJob
from poolfetch.core.redact import is_credential_header, redact_text
from poolfetch.core.sinks import BodyStore, PendingBody

CHUNK_SIZE = 64 * 1024
#: Bytes of an unsaved (error or discarded) body read to keep the connection reusable; past
#: this the connection is closed instead.
DRAIN_LIMIT = 256 * 1024


@dataclass(frozen=True, slots=True)
class Attempt:
    """What a worker returns: the outcome and, on success with ``-o``, the body to commit."""

    outcome: AttemptOutcome
    pending: PendingBody | None


class _CredentialSafeSession(requests.Session):
    """A Session that drops every credential header on a redirect to another host.

    ``requests`` itself only drops ``Authorization``; the contract also covers ``Cookie``,
    ``Proxy-Authorization`` and headers naming a token, key, secret or auth.
    """

    def rebuild_auth(
        self, prepared_request: requests.PreparedRequest, response: requests.Response
    ) -> None:
        original = response.request.url
        target = prepared_request.url
        if original is not None and target is not None and _host_changed(self, original, target):
            for name in [n for n in prepared_request.headers if is_credential_header(n)]:
                del prepared_request.headers[name]


class _NoCookies(RequestsCookieJar):
    """A jar that never stores or sends a cookie: results must not depend on which worker
    fetched what before. (Also skips the cookie parsing of every response.)"""

    def extract_cookies(self, response: Any, request: Any) -> None:
        return None

    def add_cookie_header(self, request: Any) -> None:
        return None


class _LeanAdapter(HTTPAdapter):
    """``HTTPAdapter`` whose responses skip the cookie jar and text-encoding guess.

    ``build_response`` is the adapter's extension point; poolfetch keeps no cookies and never
    decodes a body as text, and those two steps were about a twentieth of an attempt's CPU.
    """

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


def _host_changed(session: requests.Session, old_url: str, new_url: str) -> bool:
    """requests' own rule for when credentials must not follow a redirect."""
    return bool(session.should_strip_auth(old_url, new_url))  # type: ignore[no-untyped-call]


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

    def init_worker(self) -> None:
        """Executor initializer: build this thread's Session before its first job."""
        session = _CredentialSafeSession()
        session.trust_env = False  # resolved per host by EnvironmentCache instead
        session.max_redirects = self._config.max_redirects
        session.cookies = _NoCookies()
        session.headers.update(self._headers)
        adapter = _LeanAdapter(
            pool_connections=self._config.effective_pool_size,
            pool_maxsize=1,
            pool_block=True,
            max_retries=0,
        )
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


class Transport:
    """Sends one attempt of one job on the calling worker's Session."""

    def __init__(
        self,
        config: FetchConfig,
        sessions: SessionFactory,
        store: BodyStore | None,
        cancelled: threading.Event,
        clock: Callable[[], float] = time.monotonic,
        digest: bool = False,
    ) -> None:
        self._config = config
        self._digest = digest
        self._sessions = sessions
        self._store = store
        self._cancelled = cancelled
        self._clock = clock
        self._env = EnvironmentCache()
        self._timeout = (config.timeouts.connect, config.timeouts.read)

    def send_once(self, job: FetchJob) -> Attempt:
        """One request for ``job``; never raises for anything the server or network does."""
        started = self._clock()
        response: requests.Response | None = None
        try:
            session = self._sessions.session()
            env = self._env.settings_for(job.url)
            response = session.send(
                self._prepare(session, job, env.auth),
                stream=True,
                timeout=self._timeout,
                allow_redirects=True,
                proxies=dict(env.proxies),
                verify=env.verify,
                cert=None,
            )
            status = response.status_code
            save = self._store is not None and 200 <= status < 300
            size, pending, digest = self._read_body(job, response, save)
        except FetchError as exc:
            return self._failed(started, exc, response)
        except Exception as exc:
            return self._failed(started, map_exception(exc), response)
        finally:
            if response is not None:
                response.close()
        headers = response.headers
        outcome = AttemptOutcome(
            started=started,
            elapsed=self._clock() - started,
            status=status,
            retry_after=headers.get("Retry-After"),
            etag=headers.get("ETag"),
            last_modified=headers.get("Last-Modified"),
            bytes=size,
            digest=digest,
            final_url=response.url if response.url != job.url else None,
        )
        return Attempt(outcome, pending)

    @staticmethod
    def _prepare(
        session: requests.Session, job: FetchJob, auth: tuple[str, str] | None
    ) -> requests.PreparedRequest:
        """The request ``Session.request`` would build, without its per-request merging.

        ``Session.request`` merges session and request settings with ``merge_setting``, whose
        runtime ``Protocol`` checks cost about a tenth of an attempt's CPU (measured); the
        session here has nothing to merge but its headers and its (cookie-refusing) jar.
        """
        headers = CaseInsensitiveDict(session.headers)
        headers.update(job.validators)
        prepared = requests.PreparedRequest()
        prepared.prepare(
            method="GET",
            url=job.url,
            headers=headers,
            cookies=session.cookies,
            auth=auth,
            hooks=session.hooks,
        )
        return prepared

    def _failed(
        self, started: float, error: FetchError, response: requests.Response | None
    ) -> Attempt:
        return Attempt(
            AttemptOutcome(
                started=started,
                elapsed=self._clock() - started,
                status=response.status_code if response is not None else None,
                error=error,
            ),
            None,
        )

    def _read_body(
        self, job: FetchJob, response: requests.Response, save: bool
    ) -> tuple[int, PendingBody | None, str | None]:
        """Stream the decoded body to a temp file (``save``) or drain it; enforce max-bytes."""
        limit = self._config.max_bytes
        declared = response.headers.get("Content-Length", "")
        if (
            limit is not None
            and declared.isdigit()
            and int(declared) > limit
            and "Content-Encoding" not in response.headers
        ):
            raise BodyTooLargeError(f"body larger than max-bytes ({limit} bytes): {declared}")
        if not save:
            size = self._drain(response, limit)
            return size, None, None
        assert self._store is not None
        pending, fd = self._store.create(job.url)
        hasher = hashlib.sha256() if self._digest else None
        size = 0
        try:
            with os.fdopen(fd, "wb", buffering=0) as out:
                for chunk in response.raw.stream(CHUNK_SIZE, decode_content=True):
                    size += len(chunk)
                    if limit is not None and size > limit:
                        raise BodyTooLargeError(f"body larger than max-bytes ({limit} bytes)")
                    if self._cancelled.is_set():
                        raise FetchError("cancelled")
                    if hasher is not None:
                        hasher.update(chunk)
                    try:
                        out.write(chunk)
                    except OSError as exc:
                        raise OutputError(f"cannot write body: {exc.strerror}") from exc
        except BaseException:
            self._store.discard(pending)
            raise
        return size, pending, hasher.hexdigest() if hasher is not None else None

    def _drain(self, response: requests.Response, limit: int | None) -> int:
        size = 0
        for chunk in response.raw.stream(CHUNK_SIZE, decode_content=True):
            size += len(chunk)
            if limit is not None and size > limit:
                raise BodyTooLargeError(f"body larger than max-bytes ({limit} bytes)")
            if size > DRAIN_LIMIT and self._store is not None:
                break  # not saved anyway: close rather than read an error page forever
            if self._cancelled.is_set():
                raise FetchError("cancelled")
        return size


def map_exception(exc: BaseException) -> FetchError:
    """Translate a ``requests``/``urllib3``/socket exception into the poolfetch error tree.

    The message names the exception class of the root cause and says what happened, without
    the URL (the record carries it) and without urllib3's pool details.
    """
    if isinstance(exc, FetchError):
        return exc
    root = _root_cause(exc)
    detail = f"{type(root).__name__}: {_short(root)}"
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return RequestTimeout(f"connect timeout ({detail})")
    if isinstance(
        exc,
        requests.exceptions.ReadTimeout
        | urllib3.exceptions.ReadTimeoutError
        | socket.timeout
        | TimeoutError,
    ):
        return RequestTimeout(f"read timeout ({detail})")
    if isinstance(exc, requests.exceptions.TooManyRedirects):
        return RedirectError(f"too many redirects (more than max-redirects): {_short(exc)}")
    if isinstance(exc, requests.exceptions.InvalidSchema | requests.exceptions.MissingSchema):
        return RedirectError(f"redirect to a URL poolfetch does not fetch: {_short(exc)}")
    if isinstance(
        exc,
        requests.exceptions.ChunkedEncodingError
        | requests.exceptions.ContentDecodingError
        | urllib3.exceptions.ProtocolError
        | urllib3.exceptions.DecodeError
        | http.client.HTTPException,
    ):
        return ProtocolError(f"broken response ({detail})")
    if isinstance(exc, requests.exceptions.ConnectionError | ConnectionError):
        if isinstance(root, http.client.HTTPException):
            return ProtocolError(f"broken response ({detail})")
        return ConnectError(f"connection failed ({detail})")
    if isinstance(exc, requests.exceptions.InvalidURL | requests.exceptions.InvalidHeader):
        return FetchError(f"invalid request ({detail})")
    if isinstance(exc, OSError):
        return ConnectError(f"network error ({detail})")
    if isinstance(exc, ValueError):  # the URL itself was checked on input: a bad Location
        return RedirectError(f"redirect to an invalid URL ({detail})")
    return FetchError(f"unexpected error ({type(exc).__name__}: {_short(exc)})")


def _root_cause(exc: BaseException) -> BaseException:
    seen: set[int] = set()
    current: BaseException = exc
    while id(current) not in seen:
        seen.add(id(current))
        nested = _nested(current)
        if nested is None:
            break
        current = nested
    return current


def _nested(exc: BaseException) -> BaseException | None:
    reason = getattr(exc, "reason", None)
    if isinstance(reason, BaseException):
        return reason
    for arg in exc.args:
        if isinstance(arg, BaseException):
            return arg
    return exc.__cause__ or None


#: Control characters in server-supplied text (status lines, Location headers) are shown
#: escaped, so an error message can never carry a terminal escape sequence to stderr.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def _short(exc: BaseException) -> str:
    text = str(exc)
    if "): " in text and "Pool(" in text:  # urllib3 "HTTPConnectionPool(host=…): msg"
        text = text.split("): ", 1)[1]
    if isinstance(exc, OSError) and exc.strerror:
        text = exc.strerror
    return _CONTROL.sub(lambda m: repr(m.group())[1:-1], redact_text(text)[:300])
