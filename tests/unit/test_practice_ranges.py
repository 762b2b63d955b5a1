"""The practice server's Range answers (RFC 9110 section 14), a table of requests."""

from __future__ import annotations

import pytest

from poolfetch.core.practice_ranges import answer_range, large_body, piece

ETAG = '"abc-1-1000"'
DATE = "Tue, 02 Jan 2024 00:00:00 GMT"


@pytest.mark.parametrize(
    ("range_header", "if_range", "expected"),
    [
        (None, None, (200, 0, 1000, None)),
        ("bytes=100-", None, (206, 100, 1000, "bytes 100-999/1000")),
        ("bytes=100-199", None, (206, 100, 200, "bytes 100-199/1000")),
        ("bytes=900-5000", None, (206, 900, 1000, "bytes 900-999/1000")),
        ("bytes=-10", None, (206, 990, 1000, "bytes 990-999/1000")),
        ("bytes=1000-", None, (416, 0, 0, "bytes */1000")),
        ("bytes=100-", ETAG, (206, 100, 1000, "bytes 100-999/1000")),
        ("bytes=100-", '"other"', (200, 0, 1000, None)),
        ("bytes=100-", 'W/"abc-1-1000"', (200, 0, 1000, None)),  # weak never matches
        ("bytes=100-", DATE, (206, 100, 1000, "bytes 100-999/1000")),
        ("bytes=100-", "Wed, 03 Jan 2024 00:00:00 GMT", (200, 0, 1000, None)),
        ("bytes=1000-", ETAG, (416, 0, 0, "bytes */1000")),
        ("bytes=1000-", '"other"', (200, 0, 1000, None)),  # If-Range first: the whole body
        ("items=1-", None, (200, 0, 1000, None)),
        ("bytes=1-2,5-6", None, (200, 0, 1000, None)),
        ("bytes=x-", None, (200, 0, 1000, None)),
        ("bytes=5-1", None, (200, 0, 1000, None)),
        ("bytes=-", None, (200, 0, 1000, None)),
    ],
)
def test_answer_range(range_header, if_range, expected) -> None:
    answer = answer_range(range_header, if_range, 1000, ETAG, DATE)
    content_range = dict(answer.headers).get("Content-Range")
    assert (answer.status, answer.start, answer.end, content_range) == expected


def test_pieces_at_any_offset_make_the_whole_body() -> None:
    body = large_body(300_001, version=3)
    assert len(body) == 300_001
    assert bytes(piece(12_345, 1000, 3)) == body[12_345:13_345]
    assert large_body(1000, version=2) != large_body(1000, version=3)
