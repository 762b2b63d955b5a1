"""The practice server's per-client limiters over real HTTP, and ``poolfetch serve`` exposing them.

These check the server the engine is measured against: what a client on the wire sees (status,
headers) and what the server counted. How poolfetch copes with each mode is in
``test_limits_rehearsal.py``.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import select
import signal
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from support import CLI, run_cli

from poolfetch.core.practice import PracticeServer, ServerOptions
from poolfetch.core.practice_limits import ServerLimits

_SERVE_START_S = 20.0


def _get(host: str, port: int, path: str = "/fixed") -> tuple[int, dict[str, str]]:
    conn = http.client.HTTPConnection(host, port, timeout=10)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
        return response.status, dict(response.getheaders())
    finally:
        conn.close()


def _at_once(server: PracticeServer, count: int) -> list[tuple[int, dict[str, str]]]:
    """``count`` requests on ``count`` connections, released together."""
    barrier = threading.Barrier(count)
    answers: list[tuple[int, dict[str, str]]] = []
    lock = threading.Lock()

    def one() -> None:
        barrier.wait(10)
        answer = _get(server.options.host, server.port)
        with lock:
            answers.append(answer)

    threads = [threading.Thread(target=one) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    return answers


def test_conn_cap_answers_503_without_retry_after_beyond_n_being_served() -> None:
    limits = ServerLimits(conn_limit=2, delay_ms=1500)
    with PracticeServer(ServerOptions(limits=limits)) as server:
        answers = _at_once(server, 5)
        stats = server.stats()
    statuses = sorted(status for status, _ in answers)
    assert statuses == [200, 200, 503, 503, 503]
    assert all("Retry-After" not in headers for _, headers in answers)
    assert stats["limit_peak_in_flight"] == 2
    assert stats["limit_refused_conn"] == 3


def test_conn_cap_can_answer_429_with_retry_after() -> None:
    limits = ServerLimits(conn_limit=1, conn_status=429, delay_ms=1500)
    with PracticeServer(ServerOptions(limits=limits)) as server:
        answers = _at_once(server, 3)
    refused = [headers for status, headers in answers if status == 429]
    assert len(refused) == 2
    assert all(headers["Retry-After"] == "1" for headers in refused)


def test_a_window_announces_its_quota_on_every_answer() -> None:
    limits = ServerLimits(window="fixed", window_limit=2, window_s=30, headers="x-ratelimit")
    with PracticeServer(ServerOptions(limits=limits)) as server:
        answers = [_get(server.options.host, server.port) for _ in range(3)]
        stats_status, _ = _get(server.options.host, server.port, "/_stats")  # never limited
    assert [status for status, _ in answers] == [200, 200, 429]
    assert [h["X-RateLimit-Remaining"] for _, h in answers] == ["1", "0", "0"]
    assert all(h["X-RateLimit-Limit"] == "2" for _, h in answers)
    assert 1 <= int(answers[2][1]["X-RateLimit-Reset"]) <= 30
    assert "Retry-After" not in answers[2][1]
    assert stats_status == 200


@contextmanager
def _serve(*args: str) -> Iterator[tuple[str, int]]:
    """``poolfetch serve --port 0 ARGS`` in its own process group; yields (host, port)."""
    process = subprocess.Popen(
        [*CLI, "serve", "--port", "0", *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
        env={k: v for k, v in os.environ.items() if not k.startswith("POOLFETCH_")},
    )
    try:
        assert process.stderr is not None
        ready, _, _ = select.select([process.stderr], [], [], _SERVE_START_S)
        line = process.stderr.readline().decode() if ready else ""
        found = re.search(r"http://([\d.]+):(\d+)", line)
        assert found, f"poolfetch serve did not start: {line!r}"
        yield found.group(1), int(found.group(2))
    finally:
        os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)
        if process.stderr is not None:
            process.stderr.close()


def test_serve_runs_a_moving_window_with_ietf_fields_and_retry_after() -> None:
    options = ("--window", "moving", "--window-limit", "2", "--window-seconds", "30")
    with _serve(*options, "--rate-headers", "ietf", "--window-retry-after") as (host, port):
        answers = [_get(host, port) for _ in range(3)]
        conn = http.client.HTTPConnection(host, port, timeout=10)
        conn.request("GET", "/_stats")
        stats = json.loads(conn.getresponse().read())
        conn.close()
    assert [status for status, _ in answers] == [200, 200, 429]
    assert answers[0][1]["RateLimit-Policy"] == '"default";q=2;w=30'
    assert re.fullmatch(r'"default";r=1;t=(29|30)', answers[0][1]["RateLimit"])
    assert 29 <= int(answers[2][1]["Retry-After"]) <= 30
    assert stats["limit_accepted"] == 2
    assert stats["limit_refused_window"] == 1


def test_serve_bucket_without_burst_refuses_a_request_sooner_than_one_over_rate() -> None:
    with _serve("--bucket-rate", "0.05") as (host, port):  # one request every 20 s
        first, first_headers = _get(host, port)
        second, second_headers = _get(host, port)
    assert first == 200
    assert "Retry-After" not in first_headers
    assert second == 429
    assert second_headers["Retry-After"] == "1"


def test_serve_names_the_missing_option() -> None:
    result = run_cli("serve", "--port", "0", "--window", "fixed", timeout=30)
    assert result.code == 2
    assert "--window-limit" in result.stderr
    assert "Traceback" not in result.stderr
    result = run_cli("serve", "--port", "0", "--rate-headers", "ietf", timeout=30)
    assert result.code == 2
    assert "--window" in result.stderr
