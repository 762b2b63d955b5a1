"""Input lines: parse_line, host_key, streaming read_lines, open_sources, count_jobs."""

from __future__ import annotations

import io
import tracemalloc
from urllib.parse import urlsplit

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from poolfetch.core.errors import SourceError
from poolfetch.core.source import (
    MAX_URL_LENGTH,
    SPACE_CHARS,
    BadLine,
    count_jobs,
    host_key,
    open_sources,
    parse_line,
    read_lines,
)

# --- parse_line ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "url"),
    [
        (b"http://example.com/", "http://example.com/"),
        (b"https://example.com/a/b?c=d#e", "https://example.com/a/b?c=d#e"),
        (b"  https://example.com:8443/x \t", "https://example.com:8443/x"),
        (b"HTTPS://EXAMPLE.COM/", "HTTPS://EXAMPLE.COM/"),
        (b"http://[::1]:8080/", "http://[::1]:8080/"),
        (b"http://127.0.0.1:65535/", "http://127.0.0.1:65535/"),
        ("http://bücher.example/ä".encode(), "http://bücher.example/ä"),
    ],
)
def test_valid_urls_are_returned_stripped(raw, url):
    assert parse_line(raw) == url


@pytest.mark.parametrize("raw", [b"", b"   ", b"\t\r", b"# a comment", b"   #indented comment"])
def test_blank_and_comment_lines_are_skipped(raw):
    assert parse_line(raw) is None


def _bad(raw: bytes) -> BadLine:
    result = parse_line(raw)
    assert isinstance(result, BadLine), result
    return result


@pytest.mark.parametrize(
    ("raw", "scheme"),
    [
        (b"ftp://example.com/file", "ftp"),
        (b"mailto:someone@example.com", "mailto"),
        (b"file:///etc/passwd", "file"),
        (b"example.com/path", "none"),
        (b"//example.com/path", "none"),
    ],
)
def test_other_schemes_are_bad_and_named(raw, scheme):
    bad = _bad(raw)
    assert scheme in bad.reason
    assert bad.text == raw.decode()


@pytest.mark.parametrize(
    "raw", [b"http://", b"http:///path", b"https://:443/", b"http:example.com"]
)
def test_url_without_host_is_bad(raw):
    assert "host" in _bad(raw).reason


@pytest.mark.parametrize("raw", [b"http://example.com:99999/", b"http://example.com:0/"])
def test_port_out_of_range_is_bad(raw):
    assert "port" in _bad(raw).reason.lower()


def test_non_numeric_port_is_bad():
    _bad(b"http://example.com:http/")


@pytest.mark.parametrize(
    ("raw", "what"),
    [
        (b"http://example.com/a b", "white space"),
        (b"http://example.com/a\tb", "white space"),
        (b"http://exa mple.com/", "white space"),
        (b"http://example.com/\x00", "control"),
        (b"http://example.com/a\x00b", "control"),
        (b"http://example.com/\x01", "control"),
        (b"http://example.com/\x1b[31m", "control"),
        (b"http://example.com/\x7f", "control"),
        (b"http://example.com/a\x0bb", "white space"),
    ],
)
def test_embedded_space_and_control_characters_are_bad(raw, what):
    bad = _bad(raw)
    assert what in bad.reason
    assert bad.text == raw.decode()


@pytest.mark.parametrize(
    "text", ["http://example.com/\u009b31m", "http://example.com/\x1c", "\x1fhttp://example.com/"]
)
def test_other_control_characters_are_bad(text):
    _bad(text.encode())


def test_invalid_utf8_is_bad_and_shown_with_replacement_char():
    bad = _bad(b"http://example.com/caf\xe9")
    assert "UTF-8" in bad.reason
    assert bad.text == "http://example.com/caf\ufffd"


def test_line_over_max_length_is_bad():
    raw = b"http://example.com/" + b"a" * MAX_URL_LENGTH
    bad = _bad(raw)
    assert str(MAX_URL_LENGTH) in bad.reason
    assert len(bad.text) <= MAX_URL_LENGTH


def test_line_of_exactly_max_length_is_fine():
    prefix = b"http://example.com/"
    raw = prefix + b"a" * (MAX_URL_LENGTH - len(prefix))
    assert parse_line(raw) == raw.decode()


def test_too_long_multibyte_line_is_reported_as_too_long():
    line = ("http://example.com/" + "é" * 20_000).encode()
    (raw,) = read_lines([("x", io.BytesIO(line + b"\n"))])
    assert "longer" in _bad(raw).reason


@given(
    st.lists(
        st.one_of(
            st.binary(max_size=40),
            st.sampled_from(
                [b"http://", b"https://", b"\x00", b"\r", b"\xff", b"[", b"]", b":", b"/", b"#"]
            ),
            st.text(max_size=10).map(str.encode),
        ),
        max_size=8,
    ).map(b"".join)
)
@example(b"http://a\x00/")
@example(b"http://[::1/")
@example(b"http://a\xef\xbc\x83b/")  # fullwidth '#': NFKC netloc check raises in urlsplit
@example(b"https://a:65536/")
@settings(max_examples=300, deadline=None)
def test_parse_line_never_raises_and_returns_only_fetchable_urls(raw):
    result = parse_line(raw)
    assert result is None or isinstance(result, (str, BadLine))
    if isinstance(result, str):
        assert not any(ch.isspace() for ch in result)
        parts = urlsplit(result)
        assert parts.scheme.lower() in ("http", "https")
        assert parts.hostname
        assert 0 < (parts.port or 80) <= 65535
        host_key(result)  # every accepted URL has a limiter key


# --- host_key ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("https://Example.COM/", "https://example.com:443/x"),
        ("http://example.com", "http://EXAMPLE.com:80/y?z"),
        ("http://user:pw@example.com/", "http://example.com/"),
        ("http://[::1]/", "http://[::1]:80/"),
    ],
)
def test_host_key_same_host(a, b):
    assert host_key(a) == host_key(b)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("http://example.com/", "https://example.com/"),
        ("http://example.com/", "http://example.com:8080/"),
        ("http://example.com/", "http://www.example.com/"),
    ],
)
def test_host_key_different_hosts(a, b):
    assert host_key(a) != host_key(b)


def test_host_key_forms():
    assert host_key("https://Example.com/") == "example.com:443"
    assert host_key("http://example.com:8080/") == "example.com:8080"
    assert host_key("http://[2001:DB8::1]:8080/") == "[2001:db8::1]:8080"
    assert host_key("https://[::1]/") == "[::1]:443"


# --- read_lines ----------------------------------------------------------------------------------


class _Endless(io.RawIOBase):
    """A stream of ``size`` bytes of ``a`` made on demand (never held in memory)."""

    def __init__(self, size: int) -> None:
        self.left = size
        self.largest_read = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        n = min(len(buffer), self.left)
        buffer[:n] = b"a" * n
        self.left -= n
        self.largest_read = max(self.largest_read, n)
        return n


def test_read_lines_handles_lf_and_crlf():
    data = b"http://a/1\r\nhttp://a/2\nhttp://a/3\r\n\r\nhttp://a/4"
    lines = list(read_lines([("x", io.BytesIO(data))]))
    assert lines == [b"http://a/1", b"http://a/2", b"http://a/3", b"", b"http://a/4"]


def test_read_lines_reads_sources_in_turn_and_closes_them():
    first, second = io.BytesIO(b"http://a/\n"), io.BytesIO(b"http://b/\n")
    assert list(read_lines([("1", first), ("2", second)])) == [b"http://a/", b"http://b/"]
    assert first.closed
    assert second.closed


def _read_traced(handle: io.BufferedReader) -> tuple[list[bytes], int]:
    """Every line ``read_lines`` yields from ``handle``, and the peak memory it took."""
    tracemalloc.start()
    try:
        lines = list(read_lines([("huge", handle)]))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return lines, peak


def test_read_lines_streams_a_huge_line():
    stream = _Endless(50 * 1024 * 1024)
    handle = io.BufferedReader(stream, buffer_size=65536)
    lines, peak = _read_traced(handle)
    assert peak < 2 * 1024 * 1024  # memory stays flat: the line is never held whole
    assert len(lines) == 1
    assert len(lines[0]) <= 4 * MAX_URL_LENGTH + 2
    assert stream.left == 0  # the rest was read and dropped
    assert "longer" in _bad(lines[0]).reason


def test_read_lines_goes_on_after_a_huge_line():
    data = b"x" * (200 * 1024) + b"\nhttp://next/\n"
    lines = list(read_lines([("x", io.BytesIO(data))]))
    assert len(lines) == 2
    assert lines[1] == b"http://next/"


def test_open_sources_missing_file_is_a_source_error(tmp_path):
    good = tmp_path / "good.txt"
    good.write_bytes(b"http://a/\n")
    with pytest.raises(SourceError, match=r"missing\.txt"):
        open_sources([str(good), str(tmp_path / "missing.txt")])


def test_open_sources_then_read(tmp_path):
    path = tmp_path / "urls.txt"
    path.write_bytes(b"http://a/\r\n# c\nhttp://b/\n")
    lines = list(read_lines(open_sources([str(path)])))
    assert [parse_line(line) for line in lines] == ["http://a/", None, "http://b/"]


# --- count_jobs ----------------------------------------------------------------------------------


def test_count_jobs_skips_blank_and_comment_lines(tmp_path):
    a = tmp_path / "a.txt"
    a.write_bytes(b"http://a/\n\n   \n# comment\n  # indented\nnot a url\r\nhttp://b/")
    b = tmp_path / "b.txt"
    b.write_bytes(b"http://c/\n")
    assert count_jobs([str(a), str(b)]) == 4  # bad lines count: they produce a record
    assert count_jobs([str(tmp_path / "missing")]) is None


@pytest.mark.parametrize("line", [b"# caf\xe9 au lait", b"\x1c"])
def test_count_jobs_equals_the_number_of_records(tmp_path, line):
    path = tmp_path / "urls.txt"
    path.write_bytes(b"http://a/\n" + line + b"\n")
    records = [r for r in map(parse_line, read_lines(open_sources([str(path)]))) if r is not None]
    assert count_jobs([str(path)]) == len(records)


# --- byte order mark, Unicode white space (what surrounds a URL) ---------------------------------

BOM = b"\xef\xbb\xbf"
#: Unicode white space other than ASCII (``str.isspace``, control characters excepted) + U+FEFF.
UNICODE_SPACES = [
    "\xa0",
    "\u1680",
    *(chr(c) for c in range(0x2000, 0x200B)),
    "\u2028",
    "\u2029",
    "\u202f",
    "\u205f",
    "\u3000",
    "\ufeff",
]


def _records(path) -> list[str | BadLine]:
    parsed = map(parse_line, read_lines(open_sources([str(path)])))
    return [r for r in parsed if r is not None]


def test_space_chars_are_unicode_white_space_without_control_characters():
    every = {chr(c) for c in range(0x110000) if chr(c).isspace()}
    controls = {"\x1c", "\x1d", "\x1e", "\x1f", "\x85"}
    assert set(SPACE_CHARS) == (every - controls) | {"\ufeff"}
    assert set(UNICODE_SPACES) == set(SPACE_CHARS) - set(" \t\n\x0b\x0c\r")


def test_read_lines_drops_a_byte_order_mark_at_the_start_of_each_source():
    first, second = io.BytesIO(BOM + b"http://a/\n" + BOM + b"x\n"), io.BytesIO(BOM + b"# c\n")
    lines = list(read_lines([("1", first), ("2", second)]))
    assert lines == [b"http://a/", BOM + b"x", b"# c"]  # only a leading one is a BOM


@pytest.mark.parametrize(
    ("data", "parsed"),
    [
        (BOM + b"http://a/\n", ["http://a/"]),
        (BOM + b"# a comment\nhttp://a/\n", ["http://a/"]),
        (BOM + b"\n", []),
        (BOM + b"  \xe3\x80\x80# indented comment\n", []),
    ],
)
def test_a_byte_order_mark_does_not_spoil_the_first_line(tmp_path, data, parsed):
    path = tmp_path / "urls.txt"
    path.write_bytes(data)
    assert _records(path) == parsed
    assert count_jobs([str(path)]) == len(parsed)


@pytest.mark.parametrize("space", UNICODE_SPACES)
def test_surrounding_unicode_white_space_is_stripped(space):
    assert parse_line(f"{space}http://a/x{space}".encode()) == "http://a/x"
    assert parse_line(f" \t{space} {space}http://a/x\t{space} \r".encode()) == "http://a/x"
    assert parse_line(f"{space}# comment".encode()) is None
    assert parse_line(f" {space}{space}\t".encode()) is None
    if space.isspace():  # inside a URL it is white space; U+FEFF inside is left to the server
        assert "white space" in _bad(f"http://a/{space}x".encode()).reason


@pytest.mark.parametrize("control", ["\x1c", "\x1d", "\x1e", "\x1f", "\x85"])
@pytest.mark.parametrize("template", ["{c}http://a/", "http://a/{c}", " {c} http://a/", "{c}#"])
def test_control_characters_that_python_calls_white_space_make_the_line_bad(control, template):
    bad = _bad(template.format(c=control).encode())
    assert "control character" in bad.reason


def test_surrounding_space_next_to_invalid_utf8_is_still_stripped():
    bad = _bad("\u3000http://a/\xff\u3000".encode().replace(b"\xc3\xbf", b"\xff"))
    assert "UTF-8" in bad.reason
    assert bad.text == "http://a/\ufffd"


def test_count_jobs_counts_exactly_the_lines_that_make_a_record(tmp_path):
    lines = [
        "http://a/",
        "\xa0http://a/\u3000",
        "\u3000",
        "\u2003# a comment",
        "\ufeff#",
        "\x1c",
        "\x85# not a comment",
        "\x1f",
        "x",
    ]
    path = tmp_path / "urls.txt"
    path.write_bytes(BOM + "\n".join(lines).encode() + b"\n")
    records = _records(path)
    assert len(records) == 6
    assert count_jobs([str(path)]) == 6


# --- lines longer than a read: white space around a URL, and memory ------------------------------


class _Stream(io.RawIOBase):
    """``parts`` (bytes, count) repeated on demand: a line of any size, never held in memory."""

    def __init__(self, *parts: tuple[bytes, int]) -> None:
        self.parts = [(piece, count) for piece, count in parts if count]
        self.pending = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while not self.pending and self.parts:
            piece, count = self.parts[0]
            n = max(1, min(count, 8192 // len(piece)))
            self.pending = piece * n
            self.parts[0] = (piece, count - n)
            if count == n:
                self.parts.pop(0)
        n = min(len(buffer), len(self.pending))
        buffer[:n] = self.pending[:n]
        self.pending = self.pending[n:]
        return n


def _lines(*parts: tuple[bytes, int]) -> list[bytes]:
    return list(read_lines([("x", io.BufferedReader(_Stream(*parts), buffer_size=65536))]))


@pytest.mark.parametrize(
    ("parts", "url"),
    [
        (((b" ", 40_000), (b"http://a/x\n", 1)), "http://a/x"),
        (((b"http://a/x", 1), (b" ", 40_000), (b"\r\n", 1)), "http://a/x"),
        (((b"\t", 100_000), (b"http://a/x", 1), (b" ", 100_000)), "http://a/x"),
        # multi-byte white space, cut at every read boundary
        (
            (("\u3000".encode(), 20_001), (b"http://a/x", 1), ("\xa0".encode(), 30_000)),
            "http://a/x",
        ),
        (((BOM, 1), (b" ", 40_000), (b"http://a/x", 1)), "http://a/x"),
        ((("\u2009 ".encode(), 9_000), (b"http://a/x", 1)), "http://a/x"),
    ],
)
def test_a_url_padded_with_more_white_space_than_a_read_is_a_url(parts, url):
    lines = _lines(*parts, (b"\nhttp://next/\n", 1))
    parsed = [r for r in map(parse_line, lines) if r is not None]
    assert parsed == [url, "http://next/"]


@pytest.mark.parametrize(
    "parts",
    [
        ((b" ", 40_000), (b"http://a/", 1), (b"x", MAX_URL_LENGTH)),  # 8,201 characters
        ((b"http://a/", 1), (b" ", 40_000), (b"x", 1)),  # white space inside, line too long
        ((b"http://a/", 1), ("\u3000".encode(), 20_000), (b"x", 1), (b" ", 40_000)),
        ((b" ", 40_000), (b"http://a/", 1), (b"x", 100_000), (b" ", 40_000)),
    ],
)
def test_content_longer_than_the_limit_stays_too_long(parts):
    (line,) = _lines(*parts)
    bad = _bad(line)
    assert "longer" in bad.reason
    assert len(bad.text) <= MAX_URL_LENGTH
    assert bad.text.startswith("http://a/")


def test_content_of_the_limit_padded_with_white_space_is_a_url():
    url = "http://a/" + "x" * (MAX_URL_LENGTH - len("http://a/"))
    (line,) = _lines((b" ", 50_000), (url.encode(), 1), (b" ", 50_000))
    assert parse_line(line) == url


@pytest.mark.parametrize("parts", [((b" ", 100_000),), ((b" ", 40_000), (b"# comment", 1))])
def test_long_blank_and_comment_lines_are_skipped(parts, tmp_path):
    (line,) = _lines(*parts)
    assert parse_line(line) is None
    path = tmp_path / "urls.txt"
    with path.open("wb") as handle:
        for piece, count in parts:
            handle.write(piece * count)
        handle.write(b"\nhttp://a/\n")
    assert count_jobs([str(path)]) == 1 == len(_records(path))


def test_read_lines_streams_a_huge_white_space_run_before_a_url():
    size = 50 * 1024 * 1024
    handle = io.BufferedReader(_Stream((b" ", size), (b"http://a/x\n", 1)), buffer_size=65536)
    lines, peak = _read_traced(handle)
    assert peak < 2 * 1024 * 1024
    assert [parse_line(line) for line in lines] == ["http://a/x"]


def test_count_jobs_never_holds_a_giant_line(tmp_path):
    path = tmp_path / "urls.txt"
    with path.open("wb") as handle:
        handle.write(b"http://a/")
        for _ in range(40):
            handle.write(b"a" * (1024 * 1024))
        handle.write(b"\n\n" + b" " * (20 * 1024 * 1024) + b"\nhttp://b/\n")
    tracemalloc.start()
    try:
        total = count_jobs([str(path)])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert total == 2
    assert peak < 2 * 1024 * 1024


# --- reasons: accurate, and never carrying a password --------------------------------------------


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"http://h:abc/", "port is not a number"),
        (b"http://h:-1/", "port is not a number"),
        (b"http://h:+80/", "port is not a number"),
        (b"http://h:99999/", "port out of range (1-65535)"),
        (b"http://h:0/", "out of range (1-65535)"),
    ],
)
def test_port_problems_are_named_accurately(raw, reason):
    assert reason in _bad(raw).reason


@pytest.mark.parametrize(
    "text",
    [
        "http://u:sekret@[::1/",
        "http://u:sekret@ex\uff03ample/",
        "http://u:sekret@[zz]/",
        "http://u:sekret@h:abc/",
        "http://u:sekret@h:99999/",
        "ftp://u:sekret@h/",
        "http://u:sekret@/",
    ],
)
def test_bad_line_reasons_never_quote_a_password(text):
    assert "sekret" not in _bad(text.encode()).reason


def test_a_too_long_line_hides_the_password_before_it_is_cut():
    bad = _bad(f"http://u:{'s' * MAX_URL_LENGTH}@h/".encode())
    assert "longer" in bad.reason
    assert "ssss" not in bad.text


def test_a_long_line_that_is_not_utf8_is_cut_and_reported_as_too_long():
    bad = _bad(b"http://example.com/" + b"\xe9" * 10_000)
    assert bad.text == ("http://example.com/" + "\ufffd" * 10_000)[:MAX_URL_LENGTH]
    assert "10,019 characters" in bad.reason
