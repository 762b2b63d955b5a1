"""Hostile servers through the real CLI: every one ends in a clear failed record, fast.

Each case checks the same things: the record says ``ok: false`` with an error a person
understands, ``path`` is null, nothing is left under ``-o DIR`` (no ``.poolfetch-*.tmp``
either), the CLI exits 1 without a traceback, and the run ends within a bound (so no worker
is left hanging on a dead socket). Bodies that could blow up memory are measured: the child's
own peak RSS comes from ``os.wait4``.
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from rawserver import (
    Behaviour,
    RawServer,
    bad_status_line,
    broken_chunked,
    brotli_zeros,
    canned,
    deflate_bomb,
    encoded_body,
    garbage_status_line,
    headers_then_stall,
    huge_headers,
    ok_body,
    zstd_zeros,
)
from support import CLI, CliResult, run_cli, run_cli_measured, write_urls

from poolfetch.core.practice import PracticeServer
from poolfetch.core.sinks import body_name

GIB = 1 << 30
#: Peak RSS a run may reach while streaming a huge or bomb body (KiB, as ru_maxrss on Linux).
RSS_LIMIT_KIB = 100 * 1024
#: Options that keep a failing case to one short attempt.
FAST = ("--timeout", "1", "--retries", "0")


@pytest.fixture
def raw_server(request: pytest.FixtureRequest) -> Iterator[RawServer]:
    """A RawServer running the behaviour given by indirect parametrization."""
    behaviour: Behaviour = request.param
    with RawServer(behaviour) as srv:
        yield srv


def _run(*args: str, cwd: Path, timeout: float = 30) -> tuple[CliResult, float]:
    started = time.monotonic()
    result = run_cli(*args, cwd=cwd, timeout=timeout)
    return result, time.monotonic() - started


def _files(out: Path) -> list[Path]:
    return [p for p in out.rglob("*") if p.is_file() or p.is_symlink()] if out.exists() else []


def _single_failure(result: CliResult, phrase: str, out: Path | None = None) -> dict[str, Any]:
    """The one record of a run that must fail cleanly with ``phrase`` in its error."""
    assert "Traceback" not in result.stderr, result.stderr
    assert result.code == 1, (result.code, result.stderr)
    [record] = result.records
    assert record["ok"] is False
    assert record["error"] and phrase in record["error"], record["error"]
    assert record["path"] is None
    if out is not None:
        assert _files(out) == [], "a partial or temporary body file was left"
    return record


# -- connection resets -------------------------------------------------------------------------


def test_reset_before_the_response(server: PracticeServer, tmp_path: Path) -> None:
    urls = write_urls(tmp_path / "urls.txt", [f"{server.url}/reset"])
    result, elapsed = _run(
        "run", str(urls), "-o", "out", "--retries", "1", "--backoff", "0", cwd=tmp_path
    )
    record = _single_failure(result, "connection failed", tmp_path / "out")
    assert "reset" in record["error"].lower()
    assert record["status"] is None and record["attempts"] == 2  # a reset is worth a retry
    assert elapsed < 10


def test_reset_mid_body_leaves_no_partial_file(server: PracticeServer, tmp_path: Path) -> None:
    urls = write_urls(tmp_path / "urls.txt", [f"{server.url}/reset-mid/4000000"])
    result, elapsed = _run("run", str(urls), "-o", "out", *FAST, cwd=tmp_path)
    record = _single_failure(result, "broken response", tmp_path / "out")
    assert "reset" in record["error"].lower()
    assert elapsed < 10


# -- stalls: the read timeout fires ------------------------------------------------------------


def test_stall_before_headers_hits_the_read_timeout(server: PracticeServer, tmp_path: Path) -> None:
    urls = write_urls(tmp_path / "urls.txt", [f"{server.url}/stall-headers"])
    result, elapsed = _run("run", str(urls), "-o", "out", *FAST, cwd=tmp_path, timeout=20)
    record = _single_failure(result, "read timeout", tmp_path / "out")
    assert 900 <= record["elapsed_ms"] < 5000
    assert elapsed < 10


@pytest.mark.parametrize("raw_server", [headers_then_stall(1000)], indirect=True, ids=["stall"])
def test_stall_after_headers_hits_the_read_timeout(raw_server: RawServer, tmp_path: Path) -> None:
    urls = write_urls(tmp_path / "urls.txt", [f"{raw_server.url}/after-headers"])
    result, elapsed = _run("run", str(urls), "-o", "out", *FAST, cwd=tmp_path, timeout=20)
    record = _single_failure(result, "read timeout", tmp_path / "out")
    # the headers had arrived: the record says so, and has no final status (ok needs one)
    assert record["status"] is None and record["error"].endswith("after HTTP 200 headers")
    assert 900 <= record["elapsed_ms"] < 5000
    assert elapsed < 10


def test_stall_mid_body_hits_the_read_timeout_and_leaves_no_file(
    server: PracticeServer, tmp_path: Path
) -> None:
    urls = write_urls(tmp_path / "urls.txt", [f"{server.url}/stall-body/2000000"])
    result, elapsed = _run("run", str(urls), "-o", "out", *FAST, cwd=tmp_path, timeout=20)
    record = _single_failure(result, "read timeout", tmp_path / "out")
    assert 900 <= record["elapsed_ms"] < 5000
    assert elapsed < 10


def _trickle(sock: socket.socket, request: bytes) -> None:
    """Headers, then one body byte every 0.2 s: each read is well within --timeout."""
    sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
    for _ in range(1000):
        time.sleep(0.2)
        sock.sendall(b"x")


def test_max_time_ends_a_body_that_trickles_within_the_read_timeout(tmp_path: Path) -> None:
    with RawServer(_trickle) as raw:
        urls = write_urls(tmp_path / "urls.txt", [f"{raw.url}/slow"])
        args = ("--timeout", "1", "--retries", "0", "--max-time", "1.5")
        result, elapsed = _run("run", str(urls), "-o", "out", *args, cwd=tmp_path, timeout=30)
    record = _single_failure(result, "max-time", tmp_path / "out")
    assert 1400 <= record["elapsed_ms"] < 4000
    assert elapsed < 10


def test_a_failed_body_is_removed_at_once_not_at_the_end(
    server: PracticeServer, tmp_path: Path
) -> None:
    # The end of the run removes leftovers too; this checks the failed attempt itself cleans up,
    # so a long run with many broken bodies never piles up temporary files.
    urls = write_urls(
        tmp_path / "urls.txt", [f"{server.url}/short/200000", f"{server.url}/delay/1500"]
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("POOLFETCH_")}
    with subprocess.Popen(
        [*CLI, "run", str(urls), "-o", "out", "--workers", "2", "--retries", "0"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    ) as proc:
        assert proc.stdout is not None
        try:
            ready, _, _ = select.select([proc.stdout], [], [], 15)
            assert ready, "no record within 15 s"
            first = json.loads(proc.stdout.readline())
            assert first["url"].endswith("/short/200000") and not first["ok"]
            in_flight_temps = _files(tmp_path / "out")  # the run is still waiting on /delay
            rest, stderr = proc.communicate(timeout=15)
        finally:
            proc.kill()
    assert in_flight_temps == [], "the failed body's temporary file was still there"
    assert proc.returncode == 1 and b"Traceback" not in stderr
    assert json.loads(rest)["ok"]


# -- malformed responses -------------------------------------------------------------------------


def test_content_length_larger_than_the_body(server: PracticeServer, tmp_path: Path) -> None:
    urls = write_urls(tmp_path / "urls.txt", [f"{server.url}/short/200000"])
    result, elapsed = _run("run", str(urls), "-o", "out", *FAST, cwd=tmp_path)
    record = _single_failure(result, "broken response", tmp_path / "out")
    assert "IncompleteRead" in record["error"]
    assert elapsed < 10


@pytest.mark.parametrize("raw_server", [broken_chunked], indirect=True, ids=["zz"])
def test_chunked_encoding_broken_mid_stream(raw_server: RawServer, tmp_path: Path) -> None:
    urls = write_urls(tmp_path / "urls.txt", [f"{raw_server.url}/chunked"])
    result, elapsed = _run("run", str(urls), "-o", "out", *FAST, cwd=tmp_path)
    record = _single_failure(result, "broken response", tmp_path / "out")
    assert "chunk" in record["error"].lower()
    assert elapsed < 10


@pytest.mark.parametrize(
    "raw_server", [bad_status_line, garbage_status_line], indirect=True, ids=["abc", "garbage"]
)
def test_invalid_status_line(raw_server: RawServer, tmp_path: Path) -> None:
    urls = write_urls(tmp_path / "urls.txt", [f"{raw_server.url}/status-line"])
    result, elapsed = _run("run", str(urls), "-o", "out", *FAST, cwd=tmp_path)
    record = _single_failure(result, "broken response", tmp_path / "out")
    assert "status" in record["error"].lower()  # "BadStatusLine: ..."
    assert record["status"] is None
    assert elapsed < 10


@pytest.mark.parametrize(
    "raw_server",
    [huge_headers(8), huge_headers(8, line_bytes=8 << 20)],
    indirect=True,
    ids=["many-lines", "one-long-line"],
)
def test_header_block_of_megabytes(raw_server: RawServer, tmp_path: Path) -> None:
    urls = write_urls(tmp_path / "urls.txt", [f"{raw_server.url}/headers"])
    result, rss_kib, elapsed = run_cli_measured("run", str(urls), "-o", "out", *FAST, cwd=tmp_path)
    record = _single_failure(result, "broken response", tmp_path / "out")
    assert "header" in record["error"].lower()
    assert record["status"] is None
    assert rss_kib < RSS_LIMIT_KIB, f"peak RSS {rss_kib} KiB"
    assert elapsed < 10


# -- bodies too large for memory or for --max-bytes ------------------------------------------------


def test_one_gib_body_over_max_bytes_fails_fast(server: PracticeServer, tmp_path: Path) -> None:
    urls = write_urls(tmp_path / "urls.txt", [f"{server.url}/bytes/{GIB}"])
    result, elapsed = _run("run", str(urls), "-o", "out", "--max-bytes", "10M", *FAST, cwd=tmp_path)
    record = _single_failure(result, "max-bytes", tmp_path / "out")
    assert record["attempts"] == 1  # not worth a retry
    assert elapsed < 5


@pytest.mark.parametrize("raw_server", [headers_then_stall(GIB)], indirect=True, ids=["1GiB"])
def test_declared_length_over_max_bytes_fails_before_reading(
    raw_server: RawServer, tmp_path: Path
) -> None:
    # The server announces 1 GiB and sends nothing: only the Content-Length check can answer
    # before the 5 s read timeout.
    urls = write_urls(tmp_path / "urls.txt", [f"{raw_server.url}/announced"])
    result, elapsed = _run(
        "run", str(urls), "-o", "out", "--max-bytes", "10M", "--timeout", "5", "--retries", "0",
        cwd=tmp_path,
    )  # fmt: skip
    record = _single_failure(result, "max-bytes", tmp_path / "out")
    assert record["elapsed_ms"] < 2000
    assert elapsed < 4.5


def test_one_gib_body_discarded_in_bounded_memory(server: PracticeServer, tmp_path: Path) -> None:
    urls = write_urls(tmp_path / "urls.txt", [f"{server.url}/bytes/{GIB}"])
    result, rss_kib, elapsed = run_cli_measured("run", str(urls), *FAST, cwd=tmp_path)
    assert result.code == 0, result.stderr
    [record] = result.records
    assert record["ok"] and record["bytes"] == GIB and record["path"] is None
    assert rss_kib < RSS_LIMIT_KIB, f"peak RSS {rss_kib} KiB"
    assert elapsed < 30


def test_gzip_bomb_counts_decoded_bytes_against_max_bytes(
    server: PracticeServer, tmp_path: Path
) -> None:
    urls = write_urls(tmp_path / "urls.txt", [f"{server.url}/gzip/{GIB}"])  # ~1 MiB on the wire
    result, rss_kib, elapsed = run_cli_measured(  # the server compresses 1 GiB before it answers
        "run", str(urls), "-o", "out", "--max-bytes", "10M", "--timeout", "20", "--retries", "0",
        cwd=tmp_path,
    )  # fmt: skip
    record = _single_failure(result, "max-bytes", tmp_path / "out")
    assert record["attempts"] == 1
    assert rss_kib < RSS_LIMIT_KIB, f"peak RSS {rss_kib} KiB"
    assert elapsed < 30


def test_deflate_bomb_counts_decoded_bytes_against_max_bytes(tmp_path: Path) -> None:
    with RawServer(deflate_bomb(GIB)) as bomb:  # built here, not at collection (about 2 s)
        urls = write_urls(tmp_path / "urls.txt", [f"{bomb.url}/deflate"])
        result, rss_kib, elapsed = run_cli_measured(
            "run", str(urls), "-o", "out", "--max-bytes", "10M", *FAST, cwd=tmp_path
        )
    record = _single_failure(result, "max-bytes", tmp_path / "out")
    assert record["attempts"] == 1
    assert rss_kib < RSS_LIMIT_KIB, f"peak RSS {rss_kib} KiB"
    assert elapsed < 10


@pytest.mark.parametrize(("coding", "compress"), [("br", brotli_zeros), ("zstd", zstd_zeros)])
def test_brotli_and_zstd_bombs_count_decoded_bytes_against_max_bytes(
    tmp_path: Path, coding: str, compress: Any
) -> None:
    with RawServer(encoded_body(coding, compress(GIB))) as bomb:  # ~190 / ~32 KiB on the wire
        urls = write_urls(tmp_path / "urls.txt", [f"{bomb.url}/{coding}"])
        result, rss_kib, elapsed = run_cli_measured(
            "run", str(urls), "-o", "out", "--max-bytes", "10M", *FAST, cwd=tmp_path
        )
    record = _single_failure(result, "max-bytes", tmp_path / "out")
    assert record["attempts"] == 1
    assert rss_kib < RSS_LIMIT_KIB, f"peak RSS {rss_kib} KiB"
    assert elapsed < 10


# -- redirects -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("max_redirects", "followed"), [(None, 10), ("3", 3)])
def test_endless_redirects_stop_at_max_redirects(
    server: PracticeServer, tmp_path: Path, max_redirects: str | None, followed: int
) -> None:
    urls = write_urls(tmp_path / "urls.txt", [f"{server.url}/redirect/1000000"])
    limit = ("--max-redirects", max_redirects) if max_redirects else ()
    result, elapsed = _run("run", str(urls), "-o", "out", *FAST, *limit, cwd=tmp_path)
    _single_failure(result, "too many redirects", tmp_path / "out")
    assert len(server.requests()) == followed + 1
    assert elapsed < 10


@pytest.mark.parametrize(
    "target", ["ftp://example.com/file", "file:///etc/passwd", "gopher://example.com/"]
)
def test_redirect_to_another_scheme_is_refused(
    server: PracticeServer, tmp_path: Path, target: str
) -> None:
    urls = write_urls(
        tmp_path / "urls.txt", [f"{server.url}/redirect-to?url={quote(target, safe='')}"]
    )
    result, elapsed = _run("run", str(urls), "-o", "out", *FAST, cwd=tmp_path)
    record = _single_failure(result, "does not fetch", tmp_path / "out")
    assert record["bytes"] == 0
    assert elapsed < 10


CREDENTIALS = {"Authorization": "Bearer s1", "Cookie": "c=1", "X-Api-Key": "k", "X-Auth-Token": "t"}
HEADER_ARGS = [
    arg
    for name, value in [*CREDENTIALS.items(), ("X-Team", "crawl")]
    for arg in ("-H", f"{name}: {value}")
]


def test_cross_host_redirect_drops_credentials(
    server: PracticeServer, second_server: PracticeServer, tmp_path: Path
) -> None:
    target = f"{second_server.url}/headers"
    urls = write_urls(tmp_path / "urls.txt", [f"{server.url}/redirect-to?url={quote(target)}"])
    result, _ = _run("run", str(urls), *FAST, *HEADER_ARGS, cwd=tmp_path)
    assert result.code == 0, result.stderr
    first = server.requests()[0].headers
    assert {name: first.get(name) for name in CREDENTIALS} == CREDENTIALS  # they were sent to A
    [seen] = second_server.requests()
    leaked = {name.lower() for name in seen.headers} & {name.lower() for name in CREDENTIALS}
    assert leaked == set(), f"credentials forwarded to another host: {leaked}"
    assert seen.headers.get("X-Team") == "crawl"  # a plain -H header still goes


def test_redirect_to_another_port_drops_credentials(server: PracticeServer, tmp_path: Path) -> None:
    with RawServer(ok_body(b"other port\n")) as other:
        target = f"{other.url}/landing"
        urls = write_urls(tmp_path / "urls.txt", [f"{server.url}/redirect-to?url={quote(target)}"])
        result, _ = _run("run", str(urls), *FAST, *HEADER_ARGS, cwd=tmp_path)
        assert result.code == 0, result.stderr
        [head] = other.requests
    lowered = head.decode("latin-1").lower()
    assert not [name for name in CREDENTIALS if f"\r\n{name.lower()}:" in lowered]
    assert "\r\nx-team: crawl\r\n" in lowered


def test_same_host_redirect_keeps_credentials(server: PracticeServer, tmp_path: Path) -> None:
    target = f"{server.url}/headers"
    urls = write_urls(tmp_path / "urls.txt", [f"{server.url}/redirect-to?url={quote(target)}"])
    result, _ = _run("run", str(urls), *FAST, *HEADER_ARGS, cwd=tmp_path)
    assert result.code == 0, result.stderr
    landing = next(e for e in server.requests() if e.path == "/headers")
    kept = {name: landing.headers.get(name) for name in CREDENTIALS}
    assert kept == CREDENTIALS  # Cookie too: redirects are followed by poolfetch, as curl does
    assert landing.headers.get("X-Team") == "crawl"


# -- the output directory and symlinks ---------------------------------------------------------


@pytest.mark.parametrize("depth", [1, 2], ids=["host-folder", "path-folder"])
def test_symlink_planted_inside_output_dir_is_not_followed(
    server: PracticeServer, tmp_path: Path, depth: int
) -> None:
    url = f"{server.url}/bytes/100"
    folders, _ = body_name(url)
    out, outside = tmp_path / "out", tmp_path / "outside"
    outside.mkdir()
    parent = out.joinpath(*folders[: depth - 1])
    parent.mkdir(parents=True)
    (parent / folders[depth - 1]).symlink_to(outside, target_is_directory=True)
    urls = write_urls(tmp_path / "urls.txt", [url])
    result, _ = _run("run", str(urls), "-o", "out", *FAST, cwd=tmp_path)
    _single_failure(result, "cannot create folder")
    assert list(outside.iterdir()) == [], "a write landed outside the output directory"
    assert [p for p in _files(out) if not p.is_symlink()] == []


def test_symlink_at_the_final_name_is_replaced_not_followed(
    server: PracticeServer, tmp_path: Path
) -> None:
    url = f"{server.url}/bytes/100"
    folders, name = body_name(url)
    out, outside = tmp_path / "out", tmp_path / "outside"
    outside.mkdir()
    victim = outside / "victim.txt"
    victim.write_text("untouched")
    out.joinpath(*folders).mkdir(parents=True)
    out.joinpath(*folders, name).symlink_to(victim)
    urls = write_urls(tmp_path / "urls.txt", [url])
    result, _ = _run("run", str(urls), "-o", "out", *FAST, cwd=tmp_path)
    assert result.code == 0, result.stderr
    [record] = result.records
    saved = tmp_path / record["path"]
    assert not saved.is_symlink() and saved.stat().st_size == 100
    assert victim.read_text() == "untouched"


def test_output_dir_that_is_a_symlink_is_refused(server: PracticeServer, tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "link").symlink_to(real, target_is_directory=True)
    urls = write_urls(tmp_path / "urls.txt", [f"{server.url}/bytes/100"])
    result, _ = _run("run", str(urls), "-o", "link", *FAST, cwd=tmp_path)
    assert result.code == 2, result.stderr
    assert "symlink" in result.stderr and "Traceback" not in result.stderr
    assert list(real.iterdir()) == []
    assert server.requests() == []


# -- server-controlled text in the summary ---------------------------------------------------------


# A server controls status lines and Location headers, so it controls error texts: they must
# never be parsed as rich markup (MarkupError after the run) nor carry terminal escapes.
def test_server_text_in_an_error_cannot_crash_the_summary(
    server: PracticeServer, tmp_path: Path
) -> None:
    target = "ftp://example.com/[/x]"
    urls = write_urls(
        tmp_path / "urls.txt", [f"{server.url}/redirect-to?url={quote(target, safe='')}"]
    )
    result, _ = _run("run", str(urls), *FAST, cwd=tmp_path)
    assert "Traceback" not in result.stderr, result.stderr[-400:]
    record = _single_failure(result, "does not fetch")
    assert "[/x]" in record["error"]
    assert "poolfetch: 1 URL: 0 ok, 1 failed" in result.stderr
    assert "; 1 request, 0 429s, 0 retries;" in result.stderr
    assert "[/x]" in result.stderr  # shown as it is, not parsed


@pytest.mark.parametrize(
    "raw_server",
    [canned(b"HTTP/1.1 \x1b]0;owned\x07\x1b[2J OK\r\n\r\n")],
    indirect=True,
    ids=["escapes"],
)
def test_terminal_escapes_from_a_server_never_reach_stderr(
    raw_server: RawServer, tmp_path: Path
) -> None:
    urls = write_urls(tmp_path / "urls.txt", [f"{raw_server.url}/escape"])
    result, _ = _run("run", str(urls), *FAST, cwd=tmp_path)
    record = _single_failure(result, "broken response")
    assert "\x1b" not in result.stderr, repr(result.stderr)
    assert "\x1b" not in record["error"] and "\\x1b" in record["error"]  # shown escaped


@pytest.mark.parametrize(
    "raw_server",
    [canned(b"HTTP/1.1 200 OK\r\nnot a header line\r\nContent-Length: 2\r\n\r\nhi")],
    indirect=True,
    ids=["no-colon"],
)
def test_a_malformed_header_line_prints_no_traceback(raw_server: RawServer, tmp_path: Path) -> None:
    urls = write_urls(tmp_path / "urls.txt", [f"{raw_server.url}/header-line"])
    result, _ = _run("run", str(urls), *FAST, cwd=tmp_path)
    assert result.code in (0, 1) and len(result.records) == 1
    assert "Traceback" not in result.stderr, result.stderr


@pytest.mark.parametrize(
    "raw_server",
    [
        canned(
            b"HTTP/1.1 302 Found\r\nLocation: ftp://user:hunter2secret@example.com/file\r\n"
            b"Content-Length: 0\r\n\r\n"
        )
    ],
    indirect=True,
    ids=["ftp-with-password"],
)
def test_a_password_in_a_redirect_location_is_never_shown(
    raw_server: RawServer, tmp_path: Path
) -> None:
    urls = write_urls(tmp_path / "urls.txt", [f"{raw_server.url}/to-ftp"])
    result, _ = _run("run", str(urls), *FAST, cwd=tmp_path)
    _single_failure(result, "does not fetch")
    assert "hunter2secret" not in result.stdout + result.stderr


@pytest.mark.parametrize("target", ["http://[::1/", "http://127.0.0.1:99999/"])
def test_a_redirect_to_an_invalid_url_says_so(
    server: PracticeServer, tmp_path: Path, target: str
) -> None:
    urls = write_urls(
        tmp_path / "urls.txt", [f"{server.url}/redirect-to?url={quote(target, safe='')}"]
    )
    result, _ = _run("run", str(urls), *FAST, cwd=tmp_path)
    record = _single_failure(result, "redirect")
    assert "unexpected" not in record["error"]


def test_run_stops_on_sigterm_while_a_server_stalls(server: PracticeServer, tmp_path: Path) -> None:
    # No thread left hanging: a stalled worker does not keep the process alive past the grace.
    urls = write_urls(tmp_path / "urls.txt", [f"{server.url}/stall-body/2000000"])
    env = {k: v for k, v in os.environ.items() if not k.startswith("POOLFETCH_")}
    with subprocess.Popen(
        [*CLI, "run", str(urls), "-o", "out", "--timeout", "30"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    ) as proc:
        deadline = time.monotonic() + 10
        while not server.requests() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.2)  # the worker is now blocked reading the stalled body
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        try:
            _, stderr = proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            pytest.fail("the run was still alive 15 s after SIGTERM")
    assert proc.returncode == 143
    assert time.monotonic() - started < 6  # the grace period is 3 s
    assert b"Traceback" not in stderr
    assert _files(tmp_path / "out") == []


def test_secret_query_parameters_are_masked_in_logs_errors_and_summary(
    server: PracticeServer, tmp_path: Path
) -> None:
    """Contract (Clarified): api_key/token/sig values never reach -vv logs, error messages or
    the summary; the record's url keeps them as given."""
    failing = f"{server.url}/fail/9/q?status=503&api_key=SEKRET1&access_token=SEKRET2"
    write_urls(tmp_path / "urls.txt", [failing])
    result = run_cli("run", "urls.txt", "-vv", "--retries", "1", "--backoff", "0", cwd=tmp_path)
    assert result.code == 1
    assert "SEKRET" not in result.stderr and "api_key=***&access_token=***" in result.stderr
    assert result.records[0]["url"] == failing  # records keep the URL as given
    # a redirect whose Location names a signature: the error, the summary and stderr mask it
    redirect = f"{server.url}/redirect-to?url=ftp://elsewhere/%3Fsig%3DSEKRET3"
    write_urls(tmp_path / "urls.txt", [redirect])
    result = run_cli("run", "urls.txt", "-v", "--summary-json", "s.json", cwd=tmp_path)
    assert result.code == 1
    summary = (tmp_path / "s.json").read_text()
    error = result.records[0]["error"]
    assert "sig=***" in error and "sig=***" in summary
    assert "SEKRET" not in error + summary + result.stderr
