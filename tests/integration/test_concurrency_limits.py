"""A server that caps requests in flight per client: poolfetch learns the cap, through the CLI.

The practice server's connection cap answers ``503`` without ``Retry-After`` beyond N being
served (nginx ``limit_conn``); ``capserver`` resets the connection instead. With defaults and
more workers than the cap, every URL must end ok, few requests be refused, and the summary must
say what was learned. The figures (time against the ideal, refused share) are the benchmark's;
these bounds are loose on purpose.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from capserver import CapServer
from support import run_cli, write_urls

from poolfetch.core.practice import PracticeServer, ServerOptions
from poolfetch.core.practice_limits import ServerLimits

CAP = 4
DELAY_S = 0.05
URLS = 200
WORKERS = 16


def test_a_connection_cap_answering_503_is_learned_and_every_url_ends_ok(tmp_path: Path) -> None:
    limits = ServerLimits(conn_limit=CAP, delay_ms=int(DELAY_S * 1000))
    with PracticeServer(ServerOptions(limits=limits)) as server:
        urls = write_urls(tmp_path / "urls.txt", [f"{server.url}/fixed?i={i}" for i in range(URLS)])
        summary = tmp_path / "summary.json"
        started = time.monotonic()
        result = run_cli(
            "run", str(urls), "--workers", str(WORKERS), "-v", "--summary-json", str(summary)
        )
        took = time.monotonic() - started
        counts = server.stats()
    assert result.code == 0, result.stderr[-2000:]
    assert len(result.records) == URLS and all(r["ok"] for r in result.records)
    assert counts["limit_peak_in_flight"] == CAP
    # the opening burst (WORKERS - CAP refused) and a probe or two, not a refusal per request
    assert counts["limit_refused"] <= WORKERS + 8, counts
    ideal = URLS * DELAY_S / CAP
    assert took < 2.5 * ideal + 2.0  # start-up and the retries' backoff on a loaded machine
    hosts = json.loads(summary.read_text())["hosts"]
    assert hosts[0]["host"] == f"127.0.0.1:{server.port}"
    assert hosts[0]["concurrency"] == CAP
    assert hosts[0]["rate"] is None  # a 503 without Retry-After is no rate signal
    assert f"at most {CAP} requests in flight" in result.stderr
    assert f"limits learned: 127.0.0.1:{server.port} ({CAP} at once)" in result.stderr


def test_connections_reset_beyond_the_cap_are_retried_and_the_cap_learned(tmp_path: Path) -> None:
    with CapServer(cap=CAP, delay=DELAY_S, reset=True) as server:
        urls = write_urls(tmp_path / "urls.txt", [f"{server.url}/{i}" for i in range(100)])
        summary = tmp_path / "summary.json"
        result = run_cli("run", str(urls), "--workers", "12", "--summary-json", str(summary))
        refused = server.refused
    assert result.code == 0, result.stderr[-2000:]
    assert all(r["ok"] for r in result.records)
    assert refused <= 12 + 8
    # in flight as the client counts it: an answer the server sent may not be handled yet, so
    # slow start can settle one above the server's count without another refusal
    assert CAP <= json.loads(summary.read_text())["hosts"][0]["concurrency"] <= CAP + 1


def test_without_adaptive_the_cap_is_not_learned(tmp_path: Path) -> None:
    limits = ServerLimits(conn_limit=CAP, delay_ms=int(DELAY_S * 1000))
    with PracticeServer(ServerOptions(limits=limits)) as server:
        urls = write_urls(tmp_path / "urls.txt", [f"{server.url}/fixed?i={i}" for i in range(40)])
        summary = tmp_path / "summary.json"
        run_cli(
            "run", str(urls), "--workers", "8", "--no-adaptive", "--retries", "8",
            "--backoff", "0.05", "--summary-json", str(summary),
        )  # fmt: skip
        refused = server.stats()["limit_refused"]
    assert json.loads(summary.read_text())["hosts"][0]["concurrency"] is None
    assert refused > 8  # every wave of eight loses four


def test_a_lone_503_of_a_flaky_url_does_not_hold_the_host_at_a_few_at_once(tmp_path: Path) -> None:
    # one URL fails once with a bare 503 while slow start has two in flight: a flaky backend,
    # not a cap of one; the host must get back to its workers, not be held at one or two
    with PracticeServer(ServerOptions()) as server:
        lines = [f"{server.url}/delay/100?i={i}" for i in range(120)]
        lines[1] = f"{server.url}/fail/1/flaky?status=503"
        urls = write_urls(tmp_path / "urls.txt", lines)
        summary = tmp_path / "summary.json"
        result = run_cli(
            "run", str(urls), "--workers", str(WORKERS), "--summary-json", str(summary)
        )
        arrivals = sorted(entry.time for entry in server.requests())
    assert result.code == 0, result.stderr[-2000:]
    assert len(result.records) == 120 and all(r["ok"] for r in result.records)
    # 16 at once take 60 requests of 100 ms in well under a second; held at one or two for the
    # 5 s before a probe, they would take five seconds or more
    assert arrivals[60] - arrivals[0] < 3.0, round(arrivals[60] - arrivals[0], 2)
    learned = json.loads(summary.read_text())["hosts"][0]["concurrency"]
    assert learned is None or learned >= WORKERS // 2, learned
