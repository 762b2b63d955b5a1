"""``--processes N``: workers in child processes, limits and records kept by the main one.

Seen at the server: the global rate holds across processes, a Retry-After seen through one
process pauses the host for all, a child killed mid-run loses nothing, bodies and state are
written as in one process.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

from support import CLI, max_in_window, run_cli, write_urls

from poolfetch.core.practice import PracticeServer


def _children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def test_two_processes_hold_the_global_rate(server: PracticeServer, tmp_path: Path) -> None:
    urls = write_urls(tmp_path / "urls.txt", [f"{server.url}/fixed?i={i}" for i in range(150)])
    summary = tmp_path / "summary.json"
    result = run_cli(
        "run", str(urls), "-w", "8", "--processes", "2", "--qps", "30",
        "--summary-json", str(summary),
    )  # fmt: skip
    assert result.code == 0, result.stderr
    assert len(result.records) == 150 and all(r["ok"] for r in result.records)
    times = [entry.time for entry in server.requests()]
    assert len(times) == 150
    assert max_in_window(times) <= 31  # 30 per second + burst 1, across both processes
    span = max(times) - min(times)
    assert 4.65 <= span <= 5.35, span  # 149 intervals at 30/s: 5 s +- 7 %
    facts = json.loads(summary.read_text())
    assert facts["processes"] == 2 and facts["sessions"] == 8 and facts["total"] == 150


def test_retry_after_through_one_process_pauses_the_host_for_all(
    server: PracticeServer, tmp_path: Path
) -> None:
    lines = [f"{server.url}/fail/1/pause?status=429&retry_after=2"]
    lines += [f"{server.url}/delay/20?a={i}" for i in range(40)]
    urls = write_urls(tmp_path / "urls.txt", lines)
    result = run_cli("run", str(urls), "-w", "4", "--processes", "2", "--no-adaptive")
    assert result.code == 0, result.stderr
    assert len(result.records) == 41 and all(r["ok"] for r in result.records)
    throttled_at = next(e.time for e in server.requests() if e.status == 429)
    times = sorted(e.time for e in server.requests())
    quiet = [t for t in times if throttled_at + 0.3 < t < throttled_at + 1.95]
    assert quiet == [], [round(t - throttled_at, 3) for t in quiet]


def test_a_killed_worker_process_loses_nothing(server: PracticeServer, tmp_path: Path) -> None:
    urls = write_urls(tmp_path / "urls.txt", [f"{server.url}/delay/200?i={i}" for i in range(40)])
    out = tmp_path / "out"
    results = tmp_path / "results.jsonl"
    env = {k: v for k, v in os.environ.items() if not k.startswith("POOLFETCH_")}
    proc = subprocess.Popen(
        [*CLI, "run", str(urls), "-w", "4", "--processes", "2", "-o", str(out),
         "--state", str(tmp_path / "state.db"), "--results", str(results)],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        while not _children(proc.pid) and time.monotonic() < deadline:  # one child, 3 threads
            time.sleep(0.05)
        while len(server.requests()) < 6 and time.monotonic() < deadline:
            time.sleep(0.02)
        first = _children(proc.pid)
        # forked at the start (no second interpreter start-up): they run the main's command line
        started_as = {_cmdline(pid) for pid in first}
        main_command = _cmdline(proc.pid)
        os.kill(first[0], signal.SIGKILL)
        replacement = b""
        while proc.poll() is None and not replacement and time.monotonic() < deadline + 20:
            new = [pid for pid in _children(proc.pid) if pid not in first]
            replacement = _cmdline(new[0]) if new else b""
            time.sleep(0.02)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, stderr.decode()
    assert started_as == {main_command}, started_as
    # a replacement mid-run is spawned (a fork then could copy a lock another thread holds)
    assert b"poolfetch.core.procchild" in replacement
    assert "ended" in stderr.decode()
    records = [json.loads(line) for line in results.read_text().splitlines()]
    assert sorted(r["url"] for r in records) == sorted(urls.read_text().split())
    assert all(r["ok"] and r["path"] for r in records)
    saved = sorted(p.name for p in out.rglob("*") if p.is_file())
    assert len(saved) == 40 and not [n for n in saved if n.startswith(".poolfetch-")]


def test_bodies_state_and_resume_work_as_in_one_process(
    server: PracticeServer, tmp_path: Path
) -> None:
    urls = write_urls(tmp_path / "urls.txt", [f"{server.url}/bytes/{1000 + i}" for i in range(12)])
    state, out = tmp_path / "state.db", tmp_path / "out"
    common = ("run", str(urls), "-w", "4", "--processes", "2", "-o", str(out))
    first = run_cli(*common, "--state", str(state))
    assert first.code == 0, first.stderr
    for record in first.records:
        assert Path(record["path"]).stat().st_size == record["bytes"]
    again = run_cli(*common, "--state", str(state))
    assert again.code == 0, again.stderr
    assert {r["url"]: r["path"] for r in again.records} == {
        r["url"]: r["path"] for r in first.records
    }


def test_processes_is_a_usage_error_when_it_makes_no_sense(tmp_path: Path) -> None:
    urls = write_urls(tmp_path / "urls.txt", ["http://127.0.0.1:9/"])
    bad = run_cli("run", str(urls), "--processes", "none")
    assert bad.code == 2 and "--processes" in bad.stderr and "auto" in bad.stderr
    shared = run_cli("run", str(urls), "--processes", "2", "--redis", "redis://127.0.0.1:9/0")
    assert shared.code == 2 and "--redis" in shared.stderr
    resumed = run_cli(
        "run", str(urls), "--processes", "2", "-C", "-o", str(tmp_path), "--state", "s.db"
    )
    assert resumed.code == 2 and "--processes 1" in resumed.stderr
    assert "Traceback" not in bad.stderr + shared.stderr + resumed.stderr


def test_more_processes_than_workers_says_how_many_run(
    server: PracticeServer, tmp_path: Path
) -> None:
    urls = write_urls(tmp_path / "urls.txt", [f"{server.url}/fixed?i={i}" for i in range(4)])
    summary = tmp_path / "summary.json"
    result = run_cli(
        "run", str(urls), "-w", "2", "--processes", "99", "--summary-json", str(summary)
    )  # fmt: skip
    assert result.code == 0, result.stderr
    assert "--processes 99 with --workers 2: 2 processes" in result.stderr
    assert json.loads(summary.read_text())["processes"] == 2
    assert len(result.records) == 4 and all(r["ok"] for r in result.records)


def test_limit_rate_is_one_line_for_all_processes(
    server: PracticeServer, second_server: PracticeServer, tmp_path: Path
) -> None:
    """Two 1 MiB bodies at once (two hosts: a host's first request goes alone), one in each
    process, at ``--limit-rate 1M`` together: each takes about 2 s (a limit per process would
    let each take 1 s)."""
    urls = write_urls(
        tmp_path / "urls.txt", [f"{srv.url}/bytes/1048576" for srv in (server, second_server)]
    )
    result = run_cli("run", str(urls), "-w", "2", "--processes", "2", "--limit-rate", "1M")
    assert result.code == 0, result.stderr
    assert [r["bytes"] for r in result.records] == [1048576, 1048576]
    assert all(1600 <= r["elapsed_ms"] <= 3200 for r in result.records), result.records


def test_a_worker_process_killed_mid_body_leaves_no_temporary_file(
    server: PracticeServer, second_server: PracticeServer, tmp_path: Path
) -> None:
    # two hosts: both bodies stall at once, one in each worker process
    urls = write_urls(
        tmp_path / "urls.txt", [f"{srv.url}/stall-body/400000" for srv in (server, second_server)]
    )
    out = tmp_path / "out"
    env = {k: v for k, v in os.environ.items() if not k.startswith("POOLFETCH_")}
    proc = subprocess.Popen(
        [*CLI, "run", str(urls), "-w", "2", "--processes", "2", "-o", str(out),
         "--timeout", "2", "--retries", "0"],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        while len(list(out.rglob(".poolfetch-*"))) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        os.kill(_children(proc.pid)[0], signal.SIGKILL)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 1, stderr.decode()  # both stall: read timeouts
    assert len(stdout.decode().splitlines()) == 2
    assert list(out.rglob(".poolfetch-*")) == []


def test_request_objects_and_bodies_travel_to_the_worker_processes(
    server: PracticeServer, tmp_path: Path
) -> None:
    lines = [
        f'{{"url": "{server.url}/echo?i={i}", "json": {{"n": {i}}}, "id": {i}}}' for i in range(6)
    ]
    urls = write_urls(tmp_path / "urls.txt", lines)
    result = run_cli("run", str(urls), "-w", "4", "--processes", "2", "-X", "PUT")
    assert result.code == 0, result.stderr
    received = sorted(server.requests(), key=lambda e: e.path)
    assert [e.method for e in received] == ["PUT"] * 6
    assert {e.content_type for e in received} == {"application/json"}
    assert len({e.body_sha256 for e in received}) == 6  # each object its own body
    assert sorted(r["id"] for r in result.records) == list(range(6))
    assert all(r["method"] == "PUT" and r["sha256"] for r in result.records)
