"""Retries, host-wide Retry-After pauses, per-host limits and the adaptive rate, seen at the
servers: what arrived, when, and on which host."""

from __future__ import annotations

import itertools
import json
import time
from pathlib import Path

from support import run_cli, write_urls

from poolfetch.core.practice import PracticeServer, ServerOptions


def _times(server: PracticeServer, marker: str = "") -> list[float]:
    return sorted(e.time for e in server.requests() if marker in e.path)


def test_retry_after_pauses_the_host_for_every_worker_while_another_host_goes_on(
    server: PracticeServer, second_server: PracticeServer, tmp_path: Path
) -> None:
    host_a = [f"{server.url}/fail/1/pause?status=429&retry_after=2"]
    host_a += [f"{server.url}/fixed?a={i}" for i in range(30)]
    host_b = [f"{second_server.url}/delay/50?b={i}" for i in range(60)]
    urls = write_urls(tmp_path / "urls.txt", host_a + host_b)
    result = run_cli("run", str(urls), "--workers", "4", "--per-host-connections", "2")
    assert result.code == 0, result.stderr
    assert all(r["ok"] for r in result.records) and len(result.records) == 91
    paused = next(r for r in result.records if "/fail/1/pause" in r["url"])
    assert paused["attempts"] == 2
    throttled_at = next(e.time for e in server.requests() if e.status == 429)
    a_times = _times(server)
    # after the 429 (and the requests already in flight), nothing reaches host A for 2 s
    quiet = [t for t in a_times if throttled_at + 0.3 < t < throttled_at + 1.95]
    assert quiet == [], [round(t - throttled_at, 3) for t in quiet]
    assert max(a_times) >= throttled_at + 1.95
    b_during = [t for t in _times(second_server) if throttled_at + 0.3 < t < throttled_at + 1.9]
    assert len(b_during) >= 10  # the other host kept receiving requests


def test_retry_after_as_http_date(server: PracticeServer, tmp_path: Path) -> None:
    urls = write_urls(
        tmp_path / "urls.txt", [f"{server.url}/fail/1/date?status=503&retry_after=date&seconds=2"]
    )
    started = time.monotonic()
    result = run_cli("run", str(urls), "--backoff", "0")
    assert result.code == 0, result.stderr
    assert result.records[0]["attempts"] == 2
    first, second = _times(server)
    assert second - first >= 1.0  # an HTTP-date has 1 s resolution: at least 1 s later
    assert time.monotonic() - started < 20


def test_retry_after_longer_than_allowed_fails_the_url_at_once(
    server: PracticeServer, tmp_path: Path
) -> None:
    urls = write_urls(
        tmp_path / "urls.txt", [f"{server.url}/fail/5/long?status=429&retry_after=3600"]
    )
    started = time.monotonic()
    result = run_cli("run", str(urls), "--max-retry-after", "30")
    assert time.monotonic() - started < 15
    assert result.code == 1
    record = result.records[0]
    assert not record["ok"] and record["attempts"] == 1 and record["status"] == 429
    assert "max-retry-after" in record["error"] and "3600" in record["error"]


def test_retries_cover_statuses_and_stop_at_the_limit(
    server: PracticeServer, tmp_path: Path
) -> None:
    urls = write_urls(
        tmp_path / "urls.txt",
        [
            f"{server.url}/fail/2/ok-after-two?status=500",
            f"{server.url}/fail/9/never?status=502",
            f"{server.url}/status/404",
        ],
    )
    result = run_cli("run", str(urls), "--retries", "3", "--backoff", "0.05")
    by_path = {r["url"].split("/", 3)[3]: r for r in result.records}
    assert result.code == 1
    assert by_path["fail/2/ok-after-two?status=500"]["attempts"] == 3
    assert by_path["fail/2/ok-after-two?status=500"]["ok"]
    never = by_path["fail/9/never?status=502"]
    assert never["attempts"] == 4 and never["error"] == "HTTP 502" and not never["ok"]
    assert by_path["status/404"]["attempts"] == 1  # other 4xx are never retried
    assert len([e for e in server.requests() if "never" in e.path]) == 4


def test_connection_errors_are_retried_and_named(server: PracticeServer, tmp_path: Path) -> None:
    urls = write_urls(tmp_path / "urls.txt", [f"{server.url}/reset"])
    result = run_cli("run", str(urls), "--retries", "2", "--backoff", "0.05")
    record = result.records[0]
    assert result.code == 1 and record["attempts"] == 3 and record["status"] is None
    assert "connection" in record["error"].lower() or "broken" in record["error"].lower()
    assert len(server.requests()) == 3


def test_per_host_connections_do_not_block_other_hosts(
    server: PracticeServer, second_server: PracticeServer, tmp_path: Path
) -> None:
    slow = [f"{server.url}/delay/600?slow={i}" for i in range(5)]
    fast = [f"{second_server.url}/fixed?fast={i}" for i in range(200)]
    urls = write_urls(tmp_path / "urls.txt", slow + fast)
    result = run_cli("run", str(urls), "--workers", "4", "--per-host-connections", "1")
    assert result.code == 0, result.stderr
    slow_times = _times(server)
    fast_times = _times(second_server)
    gaps = [b - a for a, b in itertools.pairwise(slow_times)]
    assert all(gap >= 0.55 for gap in gaps), gaps  # one at a time to the slow host
    # the fast host's 200 requests were all served while the slow host was still busy
    assert max(fast_times) < slow_times[2], max(fast_times) - slow_times[0]


def test_per_host_qps_limits_each_host_separately(
    server: PracticeServer, second_server: PracticeServer, tmp_path: Path
) -> None:
    urls = [f"{server.url}/fixed?a={i}" for i in range(10)]
    urls += [f"{second_server.url}/fixed?b={i}" for i in range(10)]
    started = time.monotonic()
    result = run_cli("run", str(write_urls(tmp_path / "u.txt", urls)), "--per-host-qps", "5")
    elapsed = time.monotonic() - started
    assert result.code == 0
    for srv in (server, second_server):
        times = _times(srv)
        assert 1.6 <= times[-1] - times[0] <= 2.4  # 10 at 5/s each, in parallel
    assert elapsed < 10


def test_adaptive_rate_backs_off_a_rate_limited_host(tmp_path: Path) -> None:
    options = ServerOptions(rate_limit=40, rate_burst=5, retry_after="1")
    with PracticeServer(options) as limited:
        urls = write_urls(tmp_path / "u.txt", [f"{limited.url}/fixed?i={i}" for i in range(200)])
        summary = tmp_path / "s.json"
        result = run_cli(
            "run", str(urls), "--workers", "10", "--retries", "10", "--summary-json", str(summary)
        )
        assert result.code == 0, result.stderr
        data = json.loads(summary.read_text())
        sent = len(limited.requests())
        throttled = sum(1 for e in limited.requests() if e.status == 429)
    assert data["status_429"] == throttled and data["requests"] == sent
    assert data["ok"] == 200
    # without adaptation nearly every request of a 10-worker burst is refused; with it,
    # the host's rate settles under the server's 40/s after the first cuts.
    assert throttled <= 0.35 * sent, (throttled, sent)
