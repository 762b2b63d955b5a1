"""One attempt on the wire, on the calling worker's Session (``core/sessions.py``).

``send_once`` does exactly one request (a redirect comes back as the next hop), streams
the body into a writer its ``BodyTarget`` gives (``bodies.py``: it never learns where bytes are
stored; with ``-C`` it asks only for the rest of a partial body, ``Range`` and ``If-Range``) or
discards it, paces body bytes for ``--limit-rate``, and maps every ``requests``/``urllib3``
exception into the ``poolfetch.core.errors`` tree (with ``wire_errors``' table, the one place
that knows them).

The environment (proxy variables, ``NO_PROXY``, ``.netrc``, ``REQUESTS_CA_BUNDLE``) is honoured
as ``requests`` would, but resolved once per host instead of on every request.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING
from urllib.parse import urljoin

import requests
import urllib3.exceptions
from requests.structures import CaseInsensitiveDict
from requests.utils import requote_uri

from poolfetch.core.bandwidth import BandwidthLimiter, Line
from poolfetch.core.bodies import BodyTarget, ResumePoint, Verdict, judge
from poolfetch.core.codings import check_codings
from poolfetch.core.config import FetchConfig
from poolfetch.core.envcache import EnvironmentCache, EnvSettings
from poolfetch.core.errors import (
    BodyTooLargeError,
    FetchError,
    ProtocolError,
    RedirectError,
    RequestTimeout,
)
from poolfetch.core.models import AttemptOutcome, FetchJob
from poolfetch.core.ratelimit_headers import parse_quota
from poolfetch.core.redact import is_credential_header, redact_url
from poolfetch.core.request import redirected
from poolfetch.core.sessions import SessionFactory
from poolfetch.core.source import host_key, url_problem
from poolfetch.core.wire_errors import map_exception, root_cause, safe_text, short_text

if TYPE_CHECKING:
    from poolfetch.core.sinks import PendingBody

CHUNK_SIZE = 64 * 1024
#: Bytes of an unsaved (error or discarded) body read to keep the connection reusable; past
#: this the connection is closed instead.
DRAIN_LIMIT = 256 * 1024


@dataclass(frozen=True, slots=True)
class Attempt:
    """What a worker returns: the outcome; on success with ``-o``, the body to commit (or, from
    a worker process, ``saved_path``: where it already committed it); after a redirect, the job
    for its target (the next hop)."""

    outcome: AttemptOutcome
    pending: PendingBody | None
    next_hop: FetchJob | None = None
    saved_path: str | None = None


class Transport:
    """Sends one attempt of one job on the calling worker's Session.

    ``cancelled`` is set when bodies still being read must be abandoned (the end of a
    shutdown's grace period), so an answer that completes within the grace is kept.
    """

    def __init__(
        self,
        config: FetchConfig,
        sessions: SessionFactory,
        bodies: BodyTarget | None,
        cancelled: threading.Event,
        clock: Callable[[], float] = time.monotonic,
        bandwidth_line: Line | None = None,
    ) -> None:
        self._config = config
        self._record_headers = config.request.record_headers
        self._sessions = sessions
        self._bodies = bodies
        self._cancelled = cancelled
        self._clock = clock
        self._bandwidth = (
            BandwidthLimiter(config.limit_rate, clock, cancelled.wait, line=bandwidth_line)
            if config.limit_rate is not None
            else None
        )
        self._read_size = (
            self._bandwidth.read_size(CHUNK_SIZE) if self._bandwidth is not None else CHUNK_SIZE
        )
        self._env = EnvironmentCache(config.access)
        self._user = config.access.user
        self._timeout = (config.timeouts.connect, config.timeouts.read)
        self._rate_headers = config.rate.rate_headers

    def send_once(self, job: FetchJob) -> Attempt:
        """One request for ``job``; never raises for anything the server or network does.

        Redirects are not followed here: a redirect comes back as ``Attempt.next_hop``, a job
        for the target that the runner schedules like any other attempt, so every hop passes
        the limiter of its own host (rate, connections, pauses) and counts as an attempt.
        """
        started = self._clock()
        response: requests.Response | None = None
        next_hop: FetchJob | None = None
        pending: PendingBody | None = None
        digest: str | None = None
        resume = self._bodies.begin(job) if self._bodies is not None else None
        try:
            session = self._sessions.session()
            env = self._env.settings_for(job.target)
            # The adapter itself, not Session.send: with redirects off, Session.send still
            # reads a redirect's whole body (into memory) to prepare a ``Response.next``.
            response = session.get_adapter(job.target).send(
                self._prepare(session, job, self._auth(job, env), resume),
                stream=True,
                timeout=self._timeout,
                proxies=dict(env.proxies),
                verify=env.verify,
                cert=env.cert,
            )
            status = response.status_code
            verdict = judge(status, response.headers, resume)
            if verdict is Verdict.REFETCH and self._bodies is not None:
                # the partial file cannot be continued: drop it, fetch whole next attempt
                size = self._drain_unwanted(response, started)
                self._bodies.drop(job)
                next_hop = job
            elif 200 <= status < 300:
                if verdict is not Verdict.APPEND:
                    resume = None
                head = job.sending.method == "HEAD"
                save = self._bodies is not None and not head
                size, pending, digest = self._read_body(job, response, save, started, resume)
                if status == 204 or head:
                    digest = None  # no body was sent: nothing to vouch for
            else:
                size = self._drain_unwanted(response, started)
                if response.is_redirect:
                    next_hop = self._next_hop(session, job, response)
        except FetchError as exc:
            return self._failed(started, exc, response)
        except Exception as exc:
            return self._failed(started, map_exception(exc, job.host), response)
        finally:
            if response is not None:
                response.close()
            if self._bodies is not None:
                self._bodies.end(job)
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
            final_url=job.hop_url,
            resumed_from=resume.offset if resume is not None and pending is not None else 0,
            content_type=headers.get("Content-Type"),
            headers=self._recorded(headers),
            quota=parse_quota(headers, time.time()) if self._rate_headers else None,
        )
        return Attempt(outcome, pending, next_hop)

    def _recorded(self, headers: CaseInsensitiveDict[str]) -> tuple[tuple[str, str], ...]:
        """The ``--record-header`` headers of a response (lower-case names, those present)."""
        if not self._record_headers:
            return ()
        return tuple(
            (name, value)
            for name in self._record_headers
            if (value := headers.get(name)) is not None
        )

    def _next_hop(
        self, session: requests.Session, job: FetchJob, response: requests.Response
    ) -> FetchJob:
        """The job for a redirect's target, or ``RedirectError`` if it must not be followed.

        The Location is resolved as ``requests`` does (its header decoding, relative targets
        joined to the current URL, unsafe characters quoted). Credential headers (``-H``
        Authorization, Cookie, tokens …) are dropped for the rest of the chain once it leaves
        the host, port or scheme (requests' rule, applied to every credential header). A 303
        (and a 301/302 after a POST) makes the next hop a GET without a body (``redirected``).
        """
        if job.hops >= self._config.max_redirects:
            raise RedirectError(
                f"too many redirects (more than max-redirects, {self._config.max_redirects})"
            )
        location = session.get_redirect_target(response)
        target = requote_uri(urljoin(job.target, location or ""))
        problem = url_problem(target)
        if problem is not None:
            shown = safe_text(redact_url(target))
            raise RedirectError(f"redirect to a URL poolfetch does not fetch: {shown}: {problem}")
        leaves = bool(session.should_strip_auth(job.target, target))  # type: ignore[no-untyped-call]
        rewritten = redirected(job.sending, response.status_code)
        return replace(
            job,
            hop_url=target,
            host=host_key(target),
            hops=job.hops + 1,
            strip_credentials=job.strip_credentials or leaves,
            hop_request=rewritten if rewritten is not None else job.hop_request,
        )

    def _auth(self, job: FetchJob, env: EnvSettings) -> tuple[str, str] | None:
        """``-u`` for the hosts of input URLs (never once a redirect left the host, as curl
        without ``--location-trusted``), else the ``.netrc`` entry of the host asked."""
        if self._user is not None and not job.strip_credentials:
            return self._user
        return env.auth

    @staticmethod
    def _prepare(
        session: requests.Session,
        job: FetchJob,
        auth: tuple[str, str] | None,
        resume: ResumePoint | None = None,
    ) -> requests.PreparedRequest:
        """The request ``Session.request`` would build, without its per-request merging.

        ``Session.request`` merges session and request settings with ``merge_setting``, whose
        runtime ``Protocol`` checks cost about a tenth of an attempt's CPU (measured); the
        session here has nothing to merge but its headers and its (cookie-refusing) jar.
        """
        spec = job.sending
        headers = CaseInsensitiveDict(session.headers)
        if spec.headers:
            headers.update(spec.headers)
        if spec.body is None and job.request.body is not None:  # a redirect dropped the body
            headers.pop("Content-Type", None)
        headers.update(job.validators)
        if resume is not None:  # If-Range decides instead: a changed resource comes whole
            for name in ("If-None-Match", "If-Modified-Since"):
                headers.pop(name, None)
            headers.update(resume.request_headers())
        if job.strip_credentials:
            for name in [n for n in headers if is_credential_header(n)]:
                del headers[name]
        prepared = requests.PreparedRequest()
        prepared.prepare(
            method=spec.method,
            url=job.target,
            headers=headers,
            data=spec.body,
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
        self,
        job: FetchJob,
        response: requests.Response,
        save: bool,
        started: float,
        resume: ResumePoint | None,
    ) -> tuple[int, PendingBody | None, str]:
        """Stream the decoded body into a writer of the body target (``save``; appending
        after ``resume``) or only count it; enforce max-bytes. Returns the bytes received.

        The one place a success body is read: its SHA-256 (the record's ``sha256``, the
        state's digest) is computed as the pieces arrive, never by reading it again (a resumed
        body's writer hashes the part already on disk once, first).
        """
        check_codings(response.headers.get("Content-Encoding"))
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
            hasher = hashlib.sha256()
            size = 0
            for chunk in self._body(response, started):
                size += len(chunk)
                if limit is not None and size > limit:
                    raise BodyTooLargeError(f"body larger than max-bytes ({limit} bytes)")
                hasher.update(chunk)
            return size, None, hasher.hexdigest()
        assert self._bodies is not None
        writer = self._bodies.open(job, response.headers, resume.offset if resume else 0)
        try:
            for chunk in self._body(response, started):
                if limit is not None and writer.size + len(chunk) > limit:
                    raise BodyTooLargeError(f"body larger than max-bytes ({limit} bytes)")
                writer.write(chunk)
        except BaseException as exc:
            writer.abort(exc)  # -C keeps a resumable partial file
            raise
        pending, digest = writer.finish()
        return writer.size - writer.offset, pending, digest

    def _body(self, response: requests.Response, started: float) -> Iterator[bytes]:
        """The decoded body in pieces as they arrive, until it ends, the run is cancelled or
        the attempt runs past ``--max-time``.

        ``read1`` returns as soon as some bytes are there (``stream`` would wait for a whole
        chunk), so the checks run however slowly a server trickles its body.
        """
        raw = response.raw
        max_time = self._config.timeouts.total
        while True:
            try:
                chunk = raw.read1(self._read_size, decode_content=True)
            except urllib3.exceptions.ProtocolError as exc:
                if not raw.chunked:
                    raise
                # read1 goes through http.client, whose chunk parser says only IncompleteRead
                detail = short_text(root_cause(exc))
                raise ProtocolError(
                    f"broken response (chunked body malformed or cut short: {detail})"
                ) from exc
            if not chunk:
                return
            if self._bandwidth is not None:
                self._bandwidth.consume(len(chunk))
            yield chunk
            if self._cancelled.is_set():
                raise FetchError("cancelled")
            if max_time is not None and self._clock() - started > max_time:
                raise RequestTimeout(f"transfer took longer than max-time ({max_time:g} s)")

    def _drain_unwanted(self, response: requests.Response, started: float) -> int:
        """Read the body of an error or redirect answer, never more than ``DRAIN_LIMIT``.

        Its status is what counts (a 429's Retry-After, a 503 worth a retry), so its size is
        never held against ``--max-bytes``; a short page is read so the connection can be
        reused, a longer one is left unread and the connection closed.
        """
        size = 0
        for chunk in self._body(response, started):
            size += len(chunk)
            if size > DRAIN_LIMIT:
                break
        return size
