"""What each request sends (method, headers, body), request objects on input lines, state keys.

An input line whose first non-blank character is ``{`` is a request object::

    {"url": "...", "method": "PUT", "headers": {"X-A": "1"}, "data": "a=1", "json": {...},
     "output": "name.json", "id": 7}

Only ``url`` is required; the other fields override the command line (``-X``, ``-H``, ``-d``,
``--json``) for that request. ``parse_request_object`` checks the object once, on the admission
thread, and never raises: a bad object becomes a ``BadLine`` saying what is wrong (invalid JSON
with its position, no ``url``, a field of the wrong type, a bad URL). ``RequestBuilder`` then
merges it with the command line into the ``RequestSpec`` a job carries to the wire.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field, replace
from typing import Any

from poolfetch.core.errors import ConfigError
from poolfetch.core.redact import REDACTED, redact_url
from poolfetch.core.source import (
    LINE_READ_LIMIT,
    MAX_URL_LENGTH,
    BadLine,
    LongLine,
    parse_line,
    strip_line,
    url_problem,
)

FORM_TYPE = "application/x-www-form-urlencoded"
JSON_TYPE = "application/json"
#: Methods that are not idempotent (RFC 9110 §9.2.2): retried only where the server cannot
#: have acted on the request, unless ``--retry-unsafe``.
UNSAFE_METHODS = frozenset({"POST", "PATCH"})
#: Methods for which a stored validator makes a conditional request (a 304 means "unchanged").
CONDITIONAL_METHODS = frozenset({"GET", "HEAD"})
#: An HTTP token (RFC 9110 §5.6.2): method and header names.
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_SPACE_OR_CONTROL = re.compile(r"[\s\x00-\x1f\x7f-\x9f]")
_FIELDS = frozenset({"url", "method", "headers", "data", "json", "output", "id"})
_MAX_OUTPUT_SEGMENT = 255
#: ``"<credential-like name>": "value"`` in a line that is not valid JSON: the value is masked
#: before the line goes into a record.
_CREDENTIAL_PAIR = re.compile(
    r'("[^"]*(?:token|key|secret|auth|cookie|password)[^"]*"\s*:\s*)"(?:[^"\\]|\\.)*"?',
    re.IGNORECASE,
)


def reject_constant(name: str) -> Any:
    """``json.loads`` hook: ``NaN`` and ``Infinity`` are Python's extensions, not JSON."""
    raise ValueError(f"{name} is not JSON")


def body_digest(body: bytes | None) -> str | None:
    """Hex SHA-256 of a request body (None without one): part of the state key."""
    return None if body is None else hashlib.sha256(body).hexdigest()


def request_key(method: str, url: str, body_sha256: str | None) -> str:
    """The ``--state`` key of a request: method, URL and body.

    A GET without a body is keyed by its URL alone, which is what every state file written
    before request methods existed holds, so those rows keep their meaning as they are. URLs
    contain no white space (input lines are checked), so the parts cannot run together.
    """
    if method == "GET" and body_sha256 is None:
        return url
    return f"{method} {url}" if body_sha256 is None else f"{method} {url} sha256:{body_sha256}"


@dataclass(frozen=True, slots=True)
class RequestSpec:
    """What a job sends besides its URL, and what its record says about it.

    ``headers`` go on top of the session's (User-Agent and ``-H``); ``body_sha256`` is the
    digest of ``body`` (filled in when not given). ``output`` is a file name under ``-o DIR``
    chosen by the input; ``id`` the request object's ``id``, or None.
    """

    method: str = "GET"
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes | None = None
    body_sha256: str | None = None
    output: str | None = None
    id: str | int | float | None = None

    def __post_init__(self) -> None:
        if self.body is not None and self.body_sha256 is None:
            object.__setattr__(self, "body_sha256", body_digest(self.body))

    @property
    def idempotent(self) -> bool:
        return self.method not in UNSAFE_METHODS

    def key(self, url: str) -> str:
        return request_key(self.method, url, self.body_sha256)


GET_REQUEST = RequestSpec()


@dataclass(frozen=True, slots=True)
class RequestObject:
    """A request object as read from one line, checked but not yet merged with the command
    line. ``body_type`` is ``FORM_TYPE`` for ``data``, ``JSON_TYPE`` for ``json``; ``text`` is
    the line as read (a shared run hands it to its workers as it is)."""

    url: str
    text: str
    method: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes | None = None
    body_type: str | None = None
    output: str | None = None
    id: str | int | float | None = None


@dataclass(frozen=True, slots=True)
class CommandLineRequest:
    """``-X``, ``--data``/``--json`` and ``--record-header`` as the run's configuration holds
    them. ``method`` None: not given (POST with a body, GET without)."""

    method: str | None = None
    body: bytes | None = None
    body_type: str | None = None
    record_headers: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        if self.method is not None and not _TOKEN.fullmatch(self.method):
            raise ConfigError(f"--method {self.method!r} is not an HTTP method name")
        if (self.body is None) != (self.body_type is None):
            raise ConfigError("a request body needs its content type (form or JSON)")
        for name in self.record_headers:
            if not _TOKEN.fullmatch(name):
                raise ConfigError(f"--record-header {name!r} is not a header name")
        lowered = tuple(dict.fromkeys(name.lower() for name in self.record_headers))
        object.__setattr__(self, "record_headers", lowered)


def parse_input_line(raw: bytes) -> str | RequestObject | BadLine | None:
    """One raw input line: a URL, a request object, a bad line, or None (blank or comment)."""
    stripped = strip_line(raw)
    if stripped[:1] != b"{":
        return parse_line(raw)
    if len(raw) >= LINE_READ_LIMIT:
        text = _masked(stripped.decode("utf-8", "replace"))[:MAX_URL_LENGTH]
        length = f" ({raw.length:,} characters)" if isinstance(raw, LongLine) else ""
        return BadLine(text, f"request object is longer than {LINE_READ_LIMIT - 2} bytes{length}")
    try:
        text = stripped.decode("utf-8")
    except UnicodeDecodeError:
        text = stripped.decode("utf-8", "replace")
        parsed: RequestObject | BadLine = BadLine(_masked(text), "line is not valid UTF-8")
    else:
        parsed = parse_request_object(text)
    if isinstance(parsed, BadLine) and len(text) > MAX_URL_LENGTH:
        # a bad line's record carries its first 8,192 characters, and says how long it was
        reason = f"{parsed.reason} (a line of {len(text):,} characters)"
        return BadLine(parsed.text[:MAX_URL_LENGTH], reason)
    return parsed


def parse_request_object(text: str) -> RequestObject | BadLine:
    """Check a request object (``text`` begins with ``{``); never raises."""
    try:
        data = json.loads(text, parse_constant=reject_constant)
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno} column {exc.colno}" if exc.lineno > 1 else f"column {exc.colno}"
        return BadLine(_masked(text), f"request object is not valid JSON: {exc.msg} at {where}")
    except (ValueError, RecursionError) as exc:
        reason = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
        return BadLine(_masked(text), f"request object is not valid JSON: {reason}")
    assert isinstance(data, dict)  # the text begins with "{"
    url = data.get("url")
    shown = redact_url(url) if isinstance(url, str) else _masked(text)
    problem = _object_problem(data)
    if problem is not None:
        return BadLine(shown, problem)
    assert isinstance(url, str)
    body, body_type = _object_body(data)
    method = data.get("method")
    headers = data.get("headers") or {}
    return RequestObject(
        url=url,
        text=text,
        method=method.upper() if isinstance(method, str) else None,
        headers=tuple((name, value.strip()) for name, value in headers.items()),
        body=body,
        body_type=body_type,
        output=data.get("output"),
        id=data.get("id"),
    )


def _object_problem(data: dict[str, Any]) -> str | None:
    unknown = sorted(set(data) - _FIELDS)
    if unknown:
        return f"request object has an unknown field {unknown[0]!r}"
    url = data.get("url")
    if url is None:
        return 'request object has no "url"'
    if not isinstance(url, str):
        return f'request object field "url" must be a string, not {_kind(url)}'
    if len(url) > MAX_URL_LENGTH:
        return f'request object "url" is longer than {MAX_URL_LENGTH} characters'
    if _SPACE_OR_CONTROL.search(url):
        return 'request object "url" contains white space or a control character'
    problem = url_problem(url)
    if problem is not None:
        return f'request object "url": {problem}'
    for name in ("method", "data", "output"):
        value = data.get(name)
        if value is not None and not isinstance(value, str):
            return f'request object field "{name}" must be a string, not {_kind(value)}'
    method = data.get("method")
    if method is not None and not _TOKEN.fullmatch(method):
        return f'request object "method" {method!r} is not an HTTP method name'
    if data.get("data") is not None and data.get("json") is not None:
        return 'request object has both "data" and "json" (give one body)'
    ident = data.get("id")
    if ident is not None and (isinstance(ident, bool) or not isinstance(ident, str | int | float)):
        return f'request object field "id" must be a string or a number, not {_kind(ident)}'
    headers = data.get("headers")
    if headers is not None:
        if not isinstance(headers, dict):
            return f'request object field "headers" must be an object, not {_kind(headers)}'
        for name, value in headers.items():
            if not _TOKEN.fullmatch(name):
                return f"request object header name {name!r} is not a header name"
            if not isinstance(value, str):
                return f'request object header "{name}" must be a string, not {_kind(value)}'
            if any(c in value for c in "\r\n\x00"):
                return f'request object header "{name}" contains a line break or NUL'
    output = data.get("output")
    if output is not None:
        problem = output_problem(output)
        if problem is not None:
            return f'request object "output" {output!r}: {problem}'
    return None


def _object_body(data: dict[str, Any]) -> tuple[bytes | None, str | None]:
    if data.get("data") is not None:
        return str(data["data"]).encode("utf-8"), FORM_TYPE
    if "json" in data and data["json"] is not None:
        text = json.dumps(data["json"], ensure_ascii=False, separators=(",", ":"))
        return text.encode("utf-8"), JSON_TYPE
    return None, None


def output_problem(name: str) -> str | None:
    """Why ``name`` cannot be a file name under ``-o DIR``, or None.

    Relative, ``/``-separated; no empty, ``.`` or ``..`` component and none starting with a dot
    (no hidden files, no clash with the run's temporary files); no backslash, ``~`` (which only
    generated names contain, so a chosen name never meets one) or control character.
    """
    if not name:
        return "is empty"
    if name.startswith("/"):
        return "must be relative to -o DIR"
    if re.search(r"[\x00-\x1f\x7f\\~]", name):
        return "contains a backslash, '~' or a control character"
    for part in name.split("/"):
        if not part or part in (".", ".."):
            return "has an empty, '.' or '..' component"
        if part.startswith("."):
            return "has a component starting with '.'"
        if len(part.encode("utf-8")) > _MAX_OUTPUT_SEGMENT:
            return f"has a component longer than {_MAX_OUTPUT_SEGMENT} bytes"
    return None


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "an array" if isinstance(value, list) else "an object"


def _masked(text: str) -> str:
    """A line that is not a usable object, fit for a record: credential-like values masked."""
    return redact_url(_CREDENTIAL_PAIR.sub(rf'\g<1>"{REDACTED}"', text))


class RequestBuilder:
    """Merges each input line with the command line into the ``RequestSpec`` it sends.

    Built once per run; a plain URL line gets the one shared command-line spec, so only
    request objects cost anything. ``saves_bodies``: ``-o DIR`` was given (``output`` needs it).
    """

    def __init__(
        self,
        request: CommandLineRequest,
        headers: tuple[tuple[str, str], ...],
        *,
        saves_bodies: bool,
    ) -> None:
        self._request = request
        self._cli_names = frozenset(name.lower() for name, _ in headers)
        self._saves_bodies = saves_bodies
        self.base = self._spec(request.method, request.body, request.body_type, (), None, None)

    @property
    def record_headers(self) -> tuple[str, ...]:
        """``--record-header`` names (lower-case): records then carry ``headers``."""
        return self._request.record_headers

    def resolve(self, line: str | RequestObject) -> RequestSpec | BadLine:
        """The spec for a URL line or a request object (a bad line if it cannot be sent)."""
        if isinstance(line, str):
            return self.base
        if line.output is not None and not self._saves_bodies:
            return BadLine(redact_url(line.url), 'request object "output" needs -o DIR')
        body, body_type = line.body, line.body_type
        if body is None:
            body, body_type = self._request.body, self._request.body_type
        method = line.method or self._request.method
        return self._spec(method, body, body_type, line.headers, line.output, line.id)

    def _spec(
        self,
        method: str | None,
        body: bytes | None,
        body_type: str | None,
        headers: tuple[tuple[str, str], ...],
        output: str | None,
        ident: str | int | float | None,
    ) -> RequestSpec:
        given = self._cli_names | {name.lower() for name, _ in headers}
        implied: list[tuple[str, str]] = []
        if body_type is not None and "content-type" not in given:
            implied.append(("Content-Type", body_type))
        if body_type == JSON_TYPE and "accept" not in given:
            implied.append(("Accept", JSON_TYPE))
        verb = (method or ("POST" if body is not None else "GET")).upper()
        spec = RequestSpec(verb, (*implied, *headers), body, output=output, id=ident)
        return spec if spec != GET_REQUEST else GET_REQUEST


def redirected(spec: RequestSpec, status: int) -> RequestSpec | None:
    """The spec of the request a redirect leads to, when it changes: None if it does not.

    RFC 9110 §15.4 as curl and browsers apply it: a 303 turns every method but HEAD into a GET
    without a body; a 301 or 302 does so for a POST only; a 307 or 308 keeps method and body.
    """
    rewrite = (status == 303 and spec.method != "HEAD") or (
        status in (301, 302) and spec.method == "POST"
    )
    if not rewrite:
        return None
    headers = tuple(
        (n, v) for n, v in spec.headers if n.lower() not in ("content-type", "content-length")
    )
    return replace(spec, method="GET", headers=headers, body=None, body_sha256=None)
