"""Redirects are attempts like any other: each hop passes the limiter of its own host.

The runner follows a redirect by scheduling its target as the job's next attempt, so rate
limits, connection caps and pauses hold for every request a server receives, and the record's
``attempts`` counts every request sent.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import time
from pathlib import Path
from urllib.parse import quote

from rawserver import RawServer, deflate_zeros
from support import CLI, max_in_window, run_cli, run_cli_measured, write_urls

from poolfetch.core.practice import PracticeServer

#: Peak RSS a run may reach while a redirect carries a bomb body (KiB, as ru_maxrss on Linux).
RSS_LIMIT_KIB = 150 * 1024


def test_every_redirect_hop_passes_the_global_rate_limit(
    server: PracticeServer, tmp_path: Path
) -> None:
    urls = write_urls(tmp_path / "u.txt", [f"{server.url}/redirect/3?i={i}" for i in range(4)])
    summary = tmp_path / "s.json"
    result = run_cli("run", str(urls), "--qps", "4", "-w", "4", "--summary-json", str(summary))
    assert result.code == 0, result.stderr
    times = [e.time for e in server.requests()]
    assert len(times) == 16  # 4 URLs x (3 redirects + the landing)
    assert max_in_window(times, 1.0) <= 5  # burst 1 + 4 a second, hops included
    assert [r["attempts"] for r in result.records] == [4, 4, 4, 4]
    assert json.loads(summary.read_text())["requests"] == 16


def test_per_host_limits_hold_for_redirect_targets(
    server: PracticeServer, second_server: PracticeServer, tmp_path: Path
) -> None:
    lines = [
        f"{server.url}/redirect-to?url={quote(f'{second_server.url}/fixed?i={i}', safe='')}"
        for i in range(6)
    ]
    urls = write_urls(tmp_path / "u.txt", lines)
    result = run_cli("run", str(urls), "--per-host-qps", "2", "-w", "6")
    assert result.code == 0, result.stderr
    landed = [e.time for e in second_server.requests()]
    assert len(landed) == 6
    assert max_in_window(landed, 1.0) <= 3  # burst 1 + 2 a second at the redirect target


def test_no_proxy_is_applied_to_a_redirect_target(
    server: PracticeServer, second_server: PracticeServer, tmp_path: Path
) -> None:
    """The first hop goes through the proxy; the target is in NO_PROXY, so it goes direct."""
    target = quote(f"{second_server.url}/fixed", safe="")
    urls = write_urls(tmp_path / "u.txt", [f"http://origin.invalid/redirect-to?url={target}"])
    env = {"HTTP_PROXY": server.url, "NO_PROXY": "127.0.0.2"}
    result = run_cli("run", str(urls), "--retries", "0", env=env)
    assert result.code == 0, result.stdout + result.stderr
    assert [e.path for e in server.requests()] == [
        f"http://origin.invalid/redirect-to?url={target}"
    ]
    assert [e.path for e in second_server.requests()] == ["/fixed"]


def test_same_host_redirect_keeps_the_cookie_header(server: PracticeServer, tmp_path: Path) -> None:
    target = quote(f"{server.url}/headers", safe="")
    urls = write_urls(tmp_path / "u.txt", [f"{server.url}/redirect-to?url={target}"])
    result = run_cli("run", str(urls), "-H", "Cookie: session=1")
    assert result.code == 0, result.stderr
    landing = next(e for e in server.requests() if e.path == "/headers")
    assert landing.headers.get("Cookie") == "session=1"


def test_a_redirect_body_is_never_read_whole(server: PracticeServer, tmp_path: Path) -> None:
    """A 302 whose (compressed) body decodes to 1 GiB: followed at once, memory bounded."""
    body = deflate_zeros(1 << 30)
    head = (
        f"HTTP/1.1 302 Found\r\nLocation: {server.url}/fixed\r\nContent-Encoding: deflate\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()

    def bomb_redirect(sock: socket.socket, request: bytes) -> None:
        sock.sendall(head + body)

    with RawServer(bomb_redirect) as raw:
        urls = write_urls(tmp_path / "u.txt", [f"{raw.url}/go"])
        result, rss_kib, _ = run_cli_measured("run", str(urls), cwd=tmp_path)
    assert rss_kib < RSS_LIMIT_KIB, f"peak RSS {rss_kib} KiB"
    assert result.code == 0, result.stdout + result.stderr
    [record] = result.records
    assert record["ok"] and record["status"] == 200 and record["attempts"] == 2
    assert [e.path for e in server.requests()] == ["/fixed"]


def test_an_error_body_over_max_bytes_keeps_its_status_and_retry_after(
    server: PracticeServer, tmp_path: Path
) -> None:
    """--max-bytes bounds bodies that are kept; a 429's page must not hide its Retry-After.

    The 429 page (15 bytes) is over the limit too, yet the host pauses and the URL is tried
    again; only the 200's body (20 bytes) is held to --max-bytes.
    """
    urls = write_urls(tmp_path / "u.txt", [f"{server.url}/fail/1/big?status=429&retry_after=1"])
    result = run_cli("run", str(urls), "--max-bytes", "4")
    [record] = result.records
    assert record["attempts"] == 2, record
    assert "max-bytes" in record["error"] and "after HTTP 200 headers" in record["error"]
    first, second = (e.time for e in server.requests())
    assert second - first >= 0.95  # the Retry-After was obeyed


def test_a_redirect_answered_during_shutdown_is_not_recorded_as_done(
    server: PracticeServer, tmp_path: Path
) -> None:
    """SIGTERM while a redirect is in flight: the URL is unfinished, so the resumed run fetches
    it (a 302 must never be stored as the URL's final, ok outcome)."""
    head = f"HTTP/1.1 302 Found\r\nLocation: {server.url}/fixed\r\nContent-Length: 0\r\n\r\n"

    def slow_redirect(sock: socket.socket, request: bytes) -> None:
        time.sleep(1.0)
        sock.sendall(head.encode())

    with RawServer(slow_redirect) as raw:
        write_urls(tmp_path / "u.txt", [f"{raw.url}/go"])
        args = [*CLI, "run", "u.txt", "--state", "state.db"]
        with subprocess.Popen(
            args, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        ) as proc:
            deadline = time.monotonic() + 10
            while not raw.requests and time.monotonic() < deadline:
                time.sleep(0.02)
            proc.send_signal(signal.SIGTERM)
            out, _ = proc.communicate(timeout=20)
        assert proc.returncode == 143
        assert out == b""  # the URL did not finish: no record
        again = run_cli("run", "u.txt", "--state", "state.db", cwd=tmp_path)
    [record] = again.records
    assert record["ok"] and record["status"] == 200 and record["skipped"] is None
    assert [e.path for e in server.requests()] == ["/fixed"]
