"""Request objects, the command-line request, redirects' method rules and the state key."""

from __future__ import annotations

import hashlib
import io
import json
import threading
import tracemalloc

import pytest

from poolfetch.core.admission import AdmissionReader, SourceItem, numbered_lines
from poolfetch.core.errors import ConfigError
from poolfetch.core.request import (
    FORM_TYPE,
    GET_REQUEST,
    JSON_TYPE,
    CommandLineRequest,
    RequestBuilder,
    RequestObject,
    RequestSpec,
    parse_input_line,
    parse_request_object,
    redirected,
    request_key,
)
from poolfetch.core.source import BadLine, read_lines

URL = "http://127.0.0.1:8080/api"


def _object(**fields: object) -> RequestObject:
    parsed = parse_request_object(json.dumps({"url": URL, **fields}))
    assert isinstance(parsed, RequestObject), parsed
    return parsed


def _bad(text: str) -> BadLine:
    parsed = parse_input_line(text.encode())
    assert isinstance(parsed, BadLine), parsed
    return parsed


# --- the object parser -------------------------------------------------------------------------


def test_a_full_object_is_read_with_every_field() -> None:
    obj = _object(
        method="put", headers={"X-A": " 1 "}, json={"k": [1, 2]}, output="a/b.json", id="r-1"
    )
    assert obj.url == URL
    assert obj.method == "PUT"
    assert obj.headers == (("X-A", "1"),)
    assert obj.body == b'{"k":[1,2]}' and obj.body_type == JSON_TYPE
    assert (obj.output, obj.id) == ("a/b.json", "r-1")


def test_only_url_is_required_and_leading_white_space_is_allowed() -> None:
    parsed = parse_input_line(b'  \t{"url": "http://h/x"}  \r')
    assert isinstance(parsed, RequestObject)
    assert (parsed.url, parsed.method, parsed.body, parsed.id) == ("http://h/x", None, None, None)


def test_url_lines_are_still_urls() -> None:
    assert parse_input_line(b"  http://h/x  ") == "http://h/x"
    assert parse_input_line(b"# {comment}") is None
    assert parse_input_line(b"   ") is None


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ('{"url": "http://h/", }', "not valid JSON: Expecting property name"),
        ('{"url": "http://h/"', "column 20"),
        ('{"url": 5}', 'field "url" must be a string, not a number'),
        ('{"method": "POST"}', 'no "url"'),
        ('{"url": "http://h/"} {"url": "http://h/2"}', "Extra data at column 22"),
        ('{"url": "ftp://h/x"}', "not an http or https URL"),
        ('{"url": "http://h/a b"}', "white space"),
        ('{"url": "http://h/", "headers": ["X: 1"]}', '"headers" must be an object'),
        ('{"url": "http://h/", "headers": {"X": 1}}', 'header "X" must be a string'),
        ('{"url": "http://h/", "headers": {"X Y": "1"}}', "is not a header name"),
        ('{"url": "http://h/", "headers": {"X": "a\\r\\nB: c"}}', "line break"),
        ('{"url": "http://h/", "method": 1}', '"method" must be a string'),
        ('{"url": "http://h/", "method": "GE T"}', "not an HTTP method name"),
        ('{"url": "http://h/", "data": {"a": 1}}', '"data" must be a string, not an object'),
        ('{"url": "http://h/", "data": "a", "json": 1}', "both"),
        ('{"url": "http://h/", "id": true}', '"id" must be a string or a number'),
        ('{"url": "http://h/", "id": [1]}', "not an array"),
        ('{"url": "http://h/", "output": "../x"}', "'..'"),
        ('{"url": "http://h/", "output": "/etc/x"}', "relative"),
        ('{"url": "http://h/", "output": "a/.hidden"}', "starting with '.'"),
        ('{"url": "http://h/", "output": "a~b"}', "'~'"),
        ('{"url": "http://h/", "output": 3}', '"output" must be a string'),
        ('{"url": "http://h/", "methd": "POST"}', "unknown field 'methd'"),
        ('{"url": "http://h/", "json": NaN}', "not valid JSON: NaN is not JSON"),
        ('{"url": "http://h/", "id": -Infinity}', "-Infinity is not JSON"),
    ],
)
def test_a_bad_object_is_a_bad_line_that_says_why(line: str, reason: str) -> None:
    assert reason in _bad(line).reason


def test_invalid_json_says_where() -> None:
    assert _bad('{"url": "http://h/" "x": 1}').reason == (
        "request object is not valid JSON: Expecting ',' delimiter at column 21"
    )


def test_a_bad_object_never_shows_a_credential() -> None:
    broken = _bad('{"url": "http://u:Pw9@h/", "headers": {"Authorization": "Bearer Pw9"}')
    assert "Pw9" not in broken.text
    wrong = _bad('{"url": "http://u:Pw9@h/", "headers": {"X-Api-Key": 5}}')
    assert "Pw9" not in wrong.text and wrong.text == "http://u:***@h/"


def test_an_object_over_the_read_limit_is_a_bad_line() -> None:
    line = b'{"url": "http://h/", "data": "' + b"a" * 40_000 + b'"}'
    (raw,) = list(numbered_lines([("big", io.BytesIO(line + b"\n"))]))
    bad = parse_input_line(raw.raw)
    assert isinstance(bad, BadLine) and "request object is longer than" in bad.reason


# --- merging with the command line -------------------------------------------------------------


def _builder(
    request: CommandLineRequest | None = None,
    headers: tuple[tuple[str, str], ...] = (),
    saves_bodies: bool = True,
) -> RequestBuilder:
    return RequestBuilder(request or CommandLineRequest(), headers, saves_bodies=saves_bodies)


def test_a_plain_run_sends_the_one_shared_get() -> None:
    assert _builder().resolve("http://h/") is GET_REQUEST


def test_data_makes_a_form_post_unless_a_header_or_method_says_otherwise() -> None:
    form = CommandLineRequest(body=b"a=1", body_type=FORM_TYPE)
    spec = _builder(form).resolve("http://h/")
    assert isinstance(spec, RequestSpec)
    assert spec.method == "POST" and spec.body == b"a=1"
    assert spec.headers == (("Content-Type", FORM_TYPE),)
    typed = _builder(form, headers=(("content-type", "text/plain"),)).resolve("http://h/")
    assert isinstance(typed, RequestSpec) and typed.headers == ()
    put = _builder(CommandLineRequest(method="put", body=b"a", body_type=FORM_TYPE))
    assert put.base.method == "PUT"


def test_json_sets_content_type_and_accept() -> None:
    spec = _builder(CommandLineRequest(body=b"{}", body_type=JSON_TYPE)).base
    assert dict(spec.headers) == {"Content-Type": JSON_TYPE, "Accept": JSON_TYPE}
    accept = _builder(CommandLineRequest(body=b"{}", body_type=JSON_TYPE), (("Accept", "*/*"),))
    assert dict(accept.base.headers) == {"Content-Type": JSON_TYPE}


def test_object_fields_override_the_command_line() -> None:
    builder = _builder(CommandLineRequest(method="PATCH", body=b"a=1", body_type=FORM_TYPE))
    inherit = builder.resolve(_object())
    assert isinstance(inherit, RequestSpec)
    assert (inherit.method, inherit.body) == ("PATCH", b"a=1")
    own = builder.resolve(_object(method="DELETE", json=[1], headers={"X-Id": "9"}, id=4))
    assert isinstance(own, RequestSpec)
    assert (own.method, own.body, own.id) == ("DELETE", b"[1]", 4)
    assert dict(own.headers) == {"Content-Type": JSON_TYPE, "Accept": JSON_TYPE, "X-Id": "9"}
    typed = _builder().resolve(_object(data="x", headers={"Content-Type": "text/csv"}))
    assert isinstance(typed, RequestSpec)
    assert typed.method == "POST" and typed.headers == (("Content-Type", "text/csv"),)


def test_output_needs_an_output_dir() -> None:
    bad = _builder(saves_bodies=False).resolve(_object(output="a.json"))
    assert isinstance(bad, BadLine) and "needs -o DIR" in bad.reason


def test_the_command_line_request_is_validated() -> None:
    with pytest.raises(ConfigError, match="--method"):
        CommandLineRequest(method="GE T")
    with pytest.raises(ConfigError, match="--record-header"):
        CommandLineRequest(record_headers=("a b",))
    assert CommandLineRequest(record_headers=("ETag", "etag")).record_headers == ("etag",)


# --- the state key -----------------------------------------------------------------------------


def test_a_get_without_body_is_keyed_by_its_url_and_bodies_make_distinct_keys() -> None:
    assert GET_REQUEST.key("http://h/") == "http://h/"
    one = RequestSpec("POST", body=b'{"a":1}')
    two = RequestSpec("POST", body=b'{"a":2}')
    assert one.body_sha256 == hashlib.sha256(b'{"a":1}').hexdigest()
    assert len({one.key("http://h/"), two.key("http://h/"), GET_REQUEST.key("http://h/")}) == 3
    assert RequestSpec("DELETE").key("http://h/") == "DELETE http://h/"
    assert request_key("POST", "http://h/", None) != request_key("PUT", "http://h/", None)


# --- redirects ---------------------------------------------------------------------------------


def test_303_turns_everything_but_head_into_a_get_without_body() -> None:
    put = RequestSpec("PUT", (("Content-Type", FORM_TYPE), ("X-A", "1")), b"a=1")
    got = redirected(put, 303)
    assert got is not None
    assert (got.method, got.body, got.body_sha256, got.headers) == (
        "GET",
        None,
        None,
        (("X-A", "1"),),
    )
    assert redirected(RequestSpec("HEAD"), 303) is None


@pytest.mark.parametrize("status", [301, 302])
def test_301_and_302_turn_a_post_into_a_get_only(status: int) -> None:
    post = redirected(RequestSpec("POST", body=b"x"), status)
    assert post is not None and post.method == "GET" and post.body is None
    assert redirected(RequestSpec("PUT", body=b"x"), status) is None


@pytest.mark.parametrize("status", [307, 308])
def test_307_and_308_keep_method_and_body(status: int) -> None:
    assert redirected(RequestSpec("POST", body=b"x"), status) is None


# --- streaming ---------------------------------------------------------------------------------


def _admit_all(count: int) -> tuple[int, int]:
    """Objects through the real admission reader, each record 'written' at once; returns how
    many items came out and the peak memory traced."""
    line = b'{"url": "http://h/%d", "json": {"n": %d, "pad": "' + b"x" * 200 + b'"}, "id": %d}\n'

    def lines():  # generated, never held: the test measures admission, not its input
        for i in range(count):
            yield from numbered_lines([("gen", io.BytesIO(line % (i, i, i)))])

    seen = 0
    done = threading.Event()
    reader: AdmissionReader

    def put(item: object) -> None:
        nonlocal seen
        if isinstance(item, SourceItem):
            assert isinstance(item.line, RequestObject)
            seen += 1
            reader.release_slot()
        else:
            done.set()

    tracemalloc.start()
    try:
        reader = AdmissionReader(lines(), put, lookahead=100, cancelled=threading.Event())
        reader.start()
        assert done.wait(120)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return seen, peak


def test_request_objects_stream_in_flat_memory() -> None:
    small_seen, small_peak = _admit_all(2_000)
    large_seen, large_peak = _admit_all(40_000)
    assert (small_seen, large_seen) == (2_000, 40_000)
    assert large_peak < small_peak + 256 * 1024, (small_peak, large_peak)


def test_a_bad_request_object_over_8192_characters_is_cut_and_says_how_long_it_was():
    text = json.dumps({"url": 1, "pad": "x" * 10_000})  # a bad object: url is not a string
    bad = _bad(text)
    assert len(bad.text) == 8192 and text.startswith(bad.text[:20])
    assert f"a line of {len(text):,} characters" in bad.reason
    huge = ("{" + " " * 40_000 + "x").encode()  # longer than a read: its head, its length
    (line,) = read_lines([("x", io.BytesIO(huge + b"\n"))])
    bad = parse_input_line(line)
    assert isinstance(bad, BadLine) and "(40,002 characters)" in bad.reason
