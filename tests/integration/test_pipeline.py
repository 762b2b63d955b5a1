"""The core pipeline through the real CLI against the practice server on 127.0.0.1."""

from __future__ import annotations

import contextlib
import json
import os
import select
import subprocess
import time
from pathlib import Path

import pytest
from support import CLI, max_in_window, run_cli, write_urls

from poolfetch.core.practice import PracticeServer

RECORD_KEYS = {"url", "ok", "status", "attempts", "bytes", "elapsed_ms", "error", "path"}


def test_connections_are_reused_and_one_session_per_worker(
    server: PracticeServer, tmp_path: Path
) -> None:
    urls = write_urls(tmp_path / "urls.txt", [f"{server.url}/fixed?i={i}" for i in range(2000)])
    summary = tmp_path / "summary.json"
    result = run_cli("run", str(urls), "--workers", "20", "--summary-json", str(summary))
    assert result.code == 0, result.stderr
    records = result.records
    assert len(records) == 2000
    assert all(r["ok"] and r["status"] == 200 and r["attempts"] == 1 for r in records)
    assert len(server.requests()) == 2000
    assert server.connections_opened <= 20
    data = json.loads(summary.read_text())
    assert data["sessions"] == 20
    assert data["total"] == 2000 == data["ok"]


def test_qps_holds_the_rate_at_the_server(server: PracticeServer, tmp_path: Path) -> None:
    urls = write_urls(tmp_path / "urls.txt", [f"{server.url}/fixed?i={i}" for i in range(150)])
    started = time.monotonic()
    result = run_cli("run", str(urls), "--workers", "20", "--pool-size", "20", "--qps", "30")
    elapsed = time.monotonic() - started
    assert result.code == 0, result.stderr
    times = [entry.time for entry in server.requests()]
    assert len(times) == 150
    assert max_in_window(times) <= 31  # 30 per second + burst 1
    span = max(times) - min(times)
    assert 4.6 <= span <= 5.6, span  # 149 intervals at 30/s after the first token
    assert elapsed < 15


def test_records_and_saved_bodies(server: PracticeServer, tmp_path: Path) -> None:
    urls = write_urls(
        tmp_path / "urls.txt",
        [f"{server.url}/bytes/1000", f"{server.url}/bytes/70000", f"{server.url}/status/404"],
    )
    result = run_cli("run", str(urls), "-o", "out", cwd=tmp_path)
    assert result.code == 1  # the 404 failed
    records = {r["url"].rsplit("/", 2)[-2] + r["url"].rsplit("/", 1)[-1]: r for r in result.records}
    assert len(records) == 3
    for record in result.records:
        assert record.keys() >= RECORD_KEYS
    small = records["bytes1000"]
    assert small["ok"] and small["bytes"] == 1000 and small["path"].startswith("out/127.0.0.1_")
    assert (tmp_path / small["path"]).stat().st_size == 1000
    big = records["bytes70000"]
    assert (tmp_path / big["path"]).stat().st_size == 70000
    missing = records["status404"]
    assert not missing["ok"] and missing["status"] == 404 and missing["path"] is None
    assert missing["error"] == "HTTP 404"
    leftovers = [p for p in (tmp_path / "out").rglob("*") if p.name.startswith(".poolfetch-")]
    assert leftovers == []


def test_bad_lines_become_records_and_the_run_goes_on(
    server: PracticeServer, tmp_path: Path
) -> None:
    lines = [
        b"# a comment",
        b"",
        b"   ",
        f"  {server.url}/fixed  ".encode(),
        b"ftp://example.com/file",
        b"http://",
        f"{server.url}/has space".encode(),
        f"{server.url}/nul\x00byte".encode(),
        b"http://example.com/\xff\xfe",
        b"http://example.com:99999/",
        ("http://example.com/" + "a" * 9000).encode(),
    ]
    source = tmp_path / "urls.txt"
    source.write_bytes(b"\n".join(lines) + b"\n")
    result = run_cli("run", str(source))
    assert result.code == 1
    records = result.records
    assert len(records) == 8  # comment and blank lines excepted
    good = [r for r in records if r["ok"]]
    assert [r["url"] for r in good] == [f"{server.url}/fixed"]
    bad = [r for r in records if not r["ok"]]
    assert all(r["status"] is None and r["attempts"] == 0 and r["error"] for r in bad)
    errors = " | ".join(r["error"] for r in bad)
    for phrase in (
        "scheme",
        "no host",
        "white space",
        "control character",
        "UTF-8",
        "port",
        "longer than 8192",
    ):
        assert phrase in errors, phrase
    assert "\ufffd" in next(r["url"] for r in bad if "UTF-8" in r["error"])
    assert "Traceback" not in result.stderr


def test_exit_codes(server: PracticeServer, tmp_path: Path) -> None:
    ok = write_urls(tmp_path / "ok.txt", [f"{server.url}/fixed"])
    assert run_cli("run", str(ok)).code == 0
    assert run_cli("run", str(tmp_path / "missing.txt")).code == 2
    assert run_cli("run", "--workers", "0", str(ok)).code == 2
    assert run_cli("run", "--no-such-option", str(ok)).code == 2
    failing = write_urls(tmp_path / "bad.txt", [f"{server.url}/status/500"])
    result = run_cli("run", "--retries", "1", "--backoff", "0", str(failing))
    assert result.code == 1
    assert result.records[0]["attempts"] == 2
    assert result.records[0]["error"] == "HTTP 500"


def test_stdin_is_streamed_and_records_flushed_at_once(server: PracticeServer) -> None:
    with subprocess.Popen(
        [*CLI, "run", "-"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    ) as proc:
        assert proc.stdin is not None and proc.stdout is not None
        try:
            proc.stdin.write(f"{server.url}/fixed?first\n".encode())
            proc.stdin.flush()
            ready, _, _ = select.select([proc.stdout], [], [], 20)
            assert ready, "no record while stdin is still open"
            first = json.loads(proc.stdout.readline())
            assert first["url"].endswith("?first") and first["ok"]
            proc.stdin.write(f"{server.url}/fixed?second\n".encode())
            proc.stdin.close()
            rest = proc.stdout.read().decode().splitlines()
            assert proc.wait(timeout=30) == 0
            assert [json.loads(line)["url"].rsplit("?", 1)[1] for line in rest] == ["second"]
        finally:
            proc.kill()


def test_max_bytes_fails_the_url_and_leaves_no_file(server: PracticeServer, tmp_path: Path) -> None:
    urls = write_urls(
        tmp_path / "urls.txt",
        [f"{server.url}/bytes/5000", f"{server.url}/gzip/10000000", f"{server.url}/bytes/100"],
    )
    out = tmp_path / "out"
    result = run_cli("run", str(urls), "--max-bytes", "4k", "-o", str(out))
    assert result.code == 1
    failed = [r for r in result.records if not r["ok"]]
    assert len(failed) == 2
    assert all("max-bytes" in r["error"] and r["path"] is None for r in failed)
    assert all(r["attempts"] == 1 for r in failed)  # not worth a retry
    files = [p for p in out.rglob("*") if p.is_file()]
    assert len(files) == 1 and files[0].stat().st_size == 100


def test_headers_and_user_agent_reach_the_server(server: PracticeServer, tmp_path: Path) -> None:
    urls = write_urls(tmp_path / "urls.txt", [f"{server.url}/headers"])
    result = run_cli(
        "run",
        str(urls),
        "-H",
        "X-Team: crawl",
        "--user-agent",
        "nightly/1.0",
        env={"POOLFETCH_HEADER": "Accept: application/json"},
    )
    assert result.code == 0, result.stderr
    seen = server.requests()[0].headers
    assert seen["User-Agent"] == "nightly/1.0"
    assert seen["X-Team"] == "crawl"
    assert "Accept" not in seen or seen["Accept"] != "application/json"  # CLI beats env


def test_default_user_agent_names_poolfetch(server: PracticeServer, tmp_path: Path) -> None:
    urls = write_urls(tmp_path / "urls.txt", [f"{server.url}/headers"])
    assert run_cli("run", str(urls)).code == 0
    assert server.requests()[0].headers["User-Agent"].startswith("poolfetch/")


def test_timeout_fails_with_a_clear_error(server: PracticeServer, tmp_path: Path) -> None:
    urls = write_urls(tmp_path / "urls.txt", [f"{server.url}/delay/3000"])
    result = run_cli("run", str(urls), "--timeout", "0.5", "--retries", "0")
    assert result.code == 1
    record = result.records[0]
    assert record["error"].startswith("read timeout") and record["attempts"] == 1
    assert "Traceback" not in result.stderr


def test_results_file_and_quiet(server: PracticeServer, tmp_path: Path) -> None:
    urls = write_urls(tmp_path / "urls.txt", [f"{server.url}/fixed?i={i}" for i in range(5)])
    results = tmp_path / "results.jsonl"
    result = run_cli("run", str(urls), "--results", str(results), "-q")
    assert result.code == 0
    assert result.stdout == "" and result.stderr == ""
    lines = results.read_text().splitlines()
    assert len(lines) == 5 and all(json.loads(line)["ok"] for line in lines)


def test_help_and_version() -> None:
    version = run_cli("--version")
    assert version.code == 0 and "poolfetch" in version.stdout
    help_text = run_cli("run", "--help").stdout
    for option in (
        "--workers",
        "--pool-size",
        "--qps",
        "--burst",
        "--per-host-qps",
        "--per-host-connections",
        "--retries",
        "--retry-on",
        "--backoff",
        "--max-backoff",
        "--max-retry-after",
        "--timeout",
        "--output-dir",
        "--results",
        "--state",
        "--header",
        "--user-agent",
        "--max-bytes",
        "--progress",
        "--quiet",
        "--summary-json",
        "--adaptive",
        "--max-redirects",
        "--refresh",
        "--config",
        "--verbose",
        "Examples:",
    ):
        assert option in help_text, option
    assert "poolfetch demo" in run_cli("--help").stdout


def test_demo_runs_offline_and_exits_zero(tmp_path: Path) -> None:
    result = run_cli("demo", "--dir", str(tmp_path / "demo"), timeout=120)
    assert result.code == 0, result.stderr
    records = [
        json.loads(line) for line in (tmp_path / "demo" / "results.jsonl").read_text().splitlines()
    ]
    assert len(records) == 600 and all(r["ok"] for r in records)
    assert any(r["attempts"] > 1 for r in records)  # the transient 503s were retried
    assert "\x1b[" not in result.stderr  # not a terminal: no escape codes
    assert "results.jsonl" in result.stderr


def test_environment_and_no_terminal_output(server: PracticeServer, tmp_path: Path) -> None:
    urls = write_urls(tmp_path / "urls.txt", [f"{server.url}/fixed?i={i}" for i in range(3)])
    result = run_cli("run", str(urls), env={"POOLFETCH_WORKERS": "0"})
    assert result.code == 2  # the environment value is validated like the option
    result = run_cli("run", str(urls), env={"POOLFETCH_QPS": "2"})
    assert result.code == 0
    times = sorted(e.time for e in server.requests())
    assert times[-1] - times[0] >= 0.9  # 3 requests at 2/s
    assert "\x1b" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1  # just the summary line
    assert os.environ.get("POOLFETCH_QPS") is None


def _allowed_cpus_while_running(server: PracticeServer, tmp_path: Path, *flags: str) -> str:
    """The CPUs every thread of a running ``poolfetch run`` may use (e.g. "1" or "0-1").

    Read once the worker threads exist: pinning happens before any thread starts, so reading
    earlier could see the interpreter still starting up, not the option applied.
    """
    urls = write_urls(tmp_path / "slow.txt", [f"{server.url}/delay/1500"])
    with subprocess.Popen(
        [*CLI, "run", str(urls), "-q", *flags], stdout=subprocess.DEVNULL
    ) as proc:
        try:
            tasks = Path(f"/proc/{proc.pid}/task")
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and len(list(tasks.iterdir())) < 2:
                time.sleep(0.05)
            allowed: set[str] = set()
            for task in tasks.iterdir():
                with contextlib.suppress(FileNotFoundError):  # a short-lived thread ended
                    status = (task / "status").read_text()
                    allowed.update(
                        line.split(":", 1)[1].strip()
                        for line in status.splitlines()
                        if line.startswith("Cpus_allowed_list")
                    )
            assert proc.wait(timeout=20) == 0
        finally:
            proc.kill()
    assert len(allowed) == 1, allowed  # every thread alike
    return allowed.pop()


def test_the_process_runs_on_one_cpu_unless_told_not_to(
    server: PracticeServer, tmp_path: Path
) -> None:
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("one CPU: nothing to pin")
    pinned = _allowed_cpus_while_running(server, tmp_path)
    assert pinned.isdigit(), pinned  # a single CPU, e.g. "1"
    free = _allowed_cpus_while_running(server, tmp_path, "--no-pin-cpu")
    assert not free.isdigit(), free  # e.g. "0-1"


def test_an_unusable_summary_json_is_refused_before_anything_is_sent(
    server: PracticeServer, tmp_path: Path
) -> None:
    write_urls(tmp_path / "urls.txt", [f"{server.url}/fixed"])
    result = run_cli("run", "urls.txt", "--summary-json", "missing/summary.json", cwd=tmp_path)
    assert result.code == 2, result.stderr
    assert "--summary-json" in result.stderr and "Traceback" not in result.stderr
    assert result.records == [] and server.requests() == []


def test_the_offline_sample_runs_against_the_practice_server(
    server: PracticeServer, tmp_path: Path
) -> None:
    """README: sample_urls.txt needs the internet; sample_local_urls.txt is the same kind of
    job against `poolfetch serve` (127.0.0.1:8080, here the fixture's port)."""
    sample = (Path(__file__).parents[2] / "sample_local_urls.txt").read_text()
    assert "http://127.0.0.1:8080/" in sample
    (tmp_path / "urls.txt").write_text(sample.replace("127.0.0.1:8080", f"127.0.0.1:{server.port}"))
    result = run_cli("run", "urls.txt", "-o", "downloads", "--backoff", "0.05", cwd=tmp_path)
    records = result.records
    assert len(records) == 11 and result.code == 1
    failed = [r for r in records if not r["ok"]]
    statuses = sorted(str(r["status"]) for r in failed)
    assert statuses == ["404", "None", "None"]  # the 404 and the two bad lines
    assert all(r["path"] for r in records if r["ok"])
