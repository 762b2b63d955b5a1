"""A run shared through a real redis-server: coordinator and worker processes on loopback.

redis-server (Debian's) is started by the fixture on a free port with persistence off and
stopped by it. Without redis-server these tests skip on a developer's machine and fail under
CI=true.
"""

from __future__ import annotations

import collections
import hashlib
import json
import select
import signal
import socket
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from support import CLI, max_in_window, require_service, write_urls

from poolfetch.core.practice import PracticeServer, ServerOptions
from poolfetch.core.practice_limits import ServerLimits


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def redis_url() -> Iterator[str]:
    binary = require_service("redis-server")
    port = _free_port()
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.kill()
        proc.wait(timeout=10)


class SharedRun:
    """Worker processes plus a coordinator; everything killed on exit."""

    def __init__(self, redis_url: str, cwd: Path) -> None:
        self.redis_url = redis_url
        self.cwd = cwd
        self.workers: list[subprocess.Popen[bytes]] = []

    def start_worker(self, *extra: str) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            [*CLI, "worker", "--redis", self.redis_url, "-q", *extra],
            cwd=self.cwd,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        self.workers.append(proc)
        return proc

    def coordinator(self, *args: str) -> subprocess.Popen[bytes]:
        # unbuffered: ``communicate`` reads the pipe itself, so lines a buffered ``readline``
        # had read ahead would be lost to it
        return subprocess.Popen(
            [*CLI, "run", "--redis", self.redis_url, *args],
            cwd=self.cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            bufsize=0,
        )

    def close(self) -> None:
        for proc in self.workers:
            if proc.poll() is None:
                proc.kill()
            proc.communicate(timeout=10)


@pytest.fixture
def shared(redis_url: str, tmp_path: Path) -> Iterator[SharedRun]:
    run = SharedRun(redis_url, tmp_path)
    try:
        yield run
    finally:
        run.close()


def _records(stdout: bytes) -> list[dict[str, object]]:
    return [json.loads(line) for line in stdout.decode().splitlines() if line.strip()]


def test_two_workers_share_one_qps_limit(
    shared: SharedRun, server: PracticeServer, tmp_path: Path
) -> None:
    write_urls(tmp_path / "urls.txt", [f"{server.url}/fixed?i={i}" for i in range(300)])
    shared.start_worker("-w", "4")
    shared.start_worker("-w", "4")
    with shared.coordinator("urls.txt", "--qps", "30") as coordinator:
        out, err = coordinator.communicate(timeout=60)
    assert coordinator.returncode == 0, err.decode()
    records = _records(out)
    assert len(records) == 300 and all(r["ok"] for r in records)
    by_worker = collections.Counter(r["worker"] for r in records)
    assert len(by_worker) == 2 and min(by_worker.values()) >= 30, by_worker
    times = sorted(e.time for e in server.requests())
    rate = (len(times) - 1) / (times[-1] - times[0])
    assert abs(rate - 30) <= 0.9, rate  # within 3 %
    assert max_in_window(times) <= 31
    for proc in shared.workers:
        assert proc.wait(timeout=20) == 0  # workers exit when the run is over


def test_retry_after_seen_by_one_worker_pauses_the_host_for_the_other(
    shared: SharedRun, server: PracticeServer, tmp_path: Path
) -> None:
    urls = [f"{server.url}/fail/1/shared?status=429&retry_after=2"]
    urls += [f"{server.url}/delay/20?i={i}" for i in range(60)]
    write_urls(tmp_path / "urls.txt", urls)
    shared.start_worker("-w", "2")
    shared.start_worker("-w", "2")
    with shared.coordinator("urls.txt") as coordinator:
        out, err = coordinator.communicate(timeout=60)
    assert coordinator.returncode == 0, err.decode()
    records = _records(out)
    assert len(records) == 61 and all(r["ok"] for r in records)
    assert len({r["worker"] for r in records}) == 2
    throttled_at = next(e.time for e in server.requests() if e.status == 429)
    during = [
        e.time - throttled_at
        for e in server.requests()
        if throttled_at + 0.3 < e.time < throttled_at + 1.95
    ]
    assert during == []  # neither worker sent anything to the paused host
    assert max(e.time for e in server.requests()) >= throttled_at + 1.95


def test_a_killed_worker_loses_nothing_and_duplicates_nothing(
    shared: SharedRun, server: PracticeServer, tmp_path: Path
) -> None:
    write_urls(tmp_path / "urls.txt", [f"{server.url}/delay/100?i={i}" for i in range(120)])
    victim = shared.start_worker("-w", "2", "--claim-idle", "2")
    shared.start_worker("-w", "2", "--claim-idle", "2")
    with shared.coordinator("urls.txt", "-o", "out") as coordinator:
        assert coordinator.stdout is not None
        seen = [coordinator.stdout.readline() for _ in range(30)]
        victim.send_signal(signal.SIGKILL)
        rest, err = coordinator.communicate(timeout=90)
    assert coordinator.returncode == 0, err.decode()
    records = _records(b"".join(seen) + rest)
    urls = [r["url"] for r in records]
    assert len(urls) == 120 == len(set(urls))  # every URL exactly once
    assert all(r["ok"] for r in records)
    files = [p for p in (tmp_path / "out").rglob("*") if p.is_file()]
    assert len(files) == 120  # no duplicate body, no temporary file left
    assert {r["path"] for r in records} == {str(p.relative_to(tmp_path)) for p in files}


def test_a_worker_stopped_by_sigterm_says_so_and_the_run_loses_nothing(
    shared: SharedRun, server: PracticeServer, tmp_path: Path
) -> None:
    write_urls(tmp_path / "urls.txt", [f"{server.url}/delay/100?i={i}" for i in range(60)])
    idle, stopped = (
        subprocess.Popen(
            [*CLI, "worker", "--redis", shared.redis_url, "-w", "2", "--claim-idle", "2"],
            cwd=tmp_path,
            stderr=subprocess.PIPE,
            bufsize=0,  # read with select (``_stderr_until``)
        )
        for _ in range(2)
    )
    shared.workers += [idle, stopped]
    assert "waiting for a run" in _stderr_until(idle, "waiting for a run", timeout=15)
    idle.send_signal(signal.SIGTERM)  # before any run: it leaves, saying so
    _, said = idle.communicate(timeout=10)
    assert idle.returncode == 143 and b"stopped by SIGTERM before a run" in said, said
    shared.start_worker("-w", "2", "--claim-idle", "2")
    with shared.coordinator("urls.txt") as coordinator:
        assert coordinator.stdout is not None
        seen = [coordinator.stdout.readline() for _ in range(10)]
        assert "joined run" in _stderr_until(stopped, "joined run", timeout=15)
        stopped.send_signal(signal.SIGTERM)  # mid-run: not "run over"
        time.sleep(0.001)  # the first is being handled: its Redis read still blocks
        stopped.send_signal(signal.SIGTERM)  # a second one: it leaves at once, just as clean
        _, said = stopped.communicate(timeout=15)
        rest, err = coordinator.communicate(timeout=90)
    assert stopped.returncode == 143 and b"Traceback" not in said, said
    assert b"stopped by SIGTERM after" in said and b"run over" not in said, said
    assert coordinator.returncode == 0, err.decode()
    urls = [r["url"] for r in _records(b"".join(seen) + rest)]
    assert len(urls) == 60 == len(set(urls))


def test_redis_going_away_mid_run_is_a_clear_error_and_state_and_summary_are_kept(
    redis_url: str, server: PracticeServer, tmp_path: Path
) -> None:
    write_urls(tmp_path / "urls.txt", [f"{server.url}/delay/100?i={i}" for i in range(100)])
    run = SharedRun(redis_url, tmp_path)
    try:
        run.start_worker("-w", "2")
        args = ["urls.txt", "--state", "state.db", "--summary-json", "summary.json"]
        with run.coordinator(*args) as coordinator:
            assert coordinator.stdout is not None
            seen = [coordinator.stdout.readline() for _ in range(10)]
            port = redis_url.rsplit(":", 1)[1].split("/", maxsplit=1)[0]
            subprocess.run(
                ["redis-cli", "-p", port, "shutdown", "nosave"],
                check=False,
                capture_output=True,
                timeout=10,
            )
            rest, err = coordinator.communicate(timeout=60)
        assert coordinator.returncode == 69
        assert "Redis" in err.decode() and "Traceback" not in err.decode()
        worker_err = run.workers[0].communicate(timeout=30)[1].decode()
        assert run.workers[0].returncode != 0
        assert "Traceback" not in worker_err
    finally:
        run.close()
    with sqlite3.connect(tmp_path / "state.db") as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        done = db.execute("SELECT count(*) FROM urls WHERE ok = 1").fetchone()[0]
    assert done >= 10
    summary = json.loads((tmp_path / "summary.json").read_text())  # written however it ended
    assert summary["total"] == len(_records(b"".join(seen) + rest)) >= 10
    assert summary["interrupted"] == "redis-unavailable"


def test_unreachable_redis_fails_at_once(tmp_path: Path) -> None:
    write_urls(tmp_path / "urls.txt", ["http://127.0.0.1:9/"])
    port = _free_port()
    started = time.monotonic()
    proc = subprocess.run(
        [*CLI, "run", "--redis", f"redis://127.0.0.1:{port}/0", "urls.txt"],
        cwd=tmp_path,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert time.monotonic() - started < 20
    assert proc.returncode == 69
    assert b"cannot use Redis" in proc.stderr


@pytest.mark.parametrize("url", ["localhost:6379", "redis://127.0.0.1:6379/x"])
def test_a_malformed_redis_url_is_a_usage_error(tmp_path: Path, url: str) -> None:
    write_urls(tmp_path / "urls.txt", ["http://127.0.0.1:9/"])
    for command in (["run", "--redis", url, "urls.txt"], ["worker", "--redis", url]):
        proc = subprocess.run(
            [*CLI, *command], cwd=tmp_path, capture_output=True, timeout=30, check=False
        )
        assert proc.returncode == 2, (command, proc.stderr)
        assert b"--redis" in proc.stderr and b"Traceback" not in proc.stderr


def _stderr_until(proc: subprocess.Popen[bytes], needle: str, timeout: float) -> str:
    """Read ``proc``'s stderr until a line contains ``needle`` (bounded by ``timeout``)."""
    assert proc.stderr is not None
    seen = ""
    deadline = time.monotonic() + timeout
    while needle not in seen and time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stderr], [], [], 0.2)
        if ready:
            line = proc.stderr.readline().decode()
            if not line:
                break
            seen += line
    return seen


def test_a_coordinator_without_workers_says_so_and_counts_them_when_they_come(
    shared: SharedRun, server: PracticeServer, tmp_path: Path
) -> None:
    write_urls(tmp_path / "urls.txt", [f"{server.url}/delay/500?i={i}" for i in range(5)])
    with shared.coordinator("urls.txt", "-v") as coordinator:
        early = _stderr_until(coordinator, "no worker is connected", timeout=15)
        assert "no worker is connected" in early and "poolfetch worker --redis" in early, early
        shared.start_worker("-w", "1")  # 2.5 s of work: the coordinator counts it meanwhile
        out, err = coordinator.communicate(timeout=60)
    assert coordinator.returncode == 0, err.decode()
    assert len(_records(out)) == 5
    assert "worker processes connected: 1" in err.decode()


def test_a_finished_run_leaves_no_redis_key_without_an_expiry(
    shared: SharedRun, server: PracticeServer, tmp_path: Path
) -> None:
    write_urls(tmp_path / "urls.txt", [f"{server.url}/fixed?i={i}" for i in range(5)])
    shared.start_worker("-w", "2")
    with shared.coordinator("urls.txt", "--qps", "50") as coordinator:
        _, err = coordinator.communicate(timeout=60)
    assert coordinator.returncode == 0, err.decode()
    assert shared.workers[0].wait(timeout=20) == 0
    client = redis.Redis.from_url(shared.redis_url)
    try:
        keys = list(client.scan_iter("poolfetch:*"))
        assert keys  # the run left its keys, to expire
        assert [k for k in keys if client.ttl(k) < 0] == []
    finally:
        client.close()


def test_a_shared_run_sends_request_objects_and_records_their_keys(
    shared: SharedRun, server: PracticeServer, tmp_path: Path
) -> None:
    lines = [
        json.dumps({"url": f"{server.url}/echo?i={i}", "json": {"n": i}, "id": i}) for i in range(6)
    ]
    lines += [f"{server.url}/echo?plain", '{"url": 1}']
    (tmp_path / "calls.jsonl").write_text("\n".join(lines) + "\n")
    shared.start_worker("-w", "2")
    with shared.coordinator("calls.jsonl", "-X", "PUT", "-d", "a=1", "-o", "out") as coordinator:
        out, err = coordinator.communicate(timeout=60)
    assert coordinator.returncode == 1, err.decode()  # the bad object
    records = {r["line"]: r for r in _records(out)}
    assert sorted(records) == list(range(1, 9))
    assert {r["source"] for r in records.values()} == {"calls.jsonl"}
    assert [records[n]["id"] for n in range(1, 7)] == list(range(6))
    assert {records[n]["method"] for n in range(1, 8)} == {"PUT"}
    assert all(records[n]["ok"] and records[n]["sha256"] for n in range(1, 8))
    assert records[8]["error"] == 'request object field "url" must be a string, not a number'
    got = {e.path: (e.method, e.content_type, e.body_sha256) for e in server.requests()}
    body = hashlib.sha256(b'{"n":3}').hexdigest()
    assert got["/echo?i=3"] == ("PUT", "application/json", body)
    form = hashlib.sha256(b"a=1").hexdigest()
    assert got["/echo?plain"] == ("PUT", "application/x-www-form-urlencoded", form)


def test_an_announced_quota_holds_over_two_workers_without_a_refusal(
    shared: SharedRun, tmp_path: Path
) -> None:
    """The coordinator's limiter paces the quota the server announces (X-RateLimit-*), for the
    attempts of every worker together: the server refuses nothing."""
    quota, window_s = 6, 1.0
    limits = ServerLimits(
        window="fixed", window_limit=quota, window_s=window_s, headers="x-ratelimit"
    )
    with PracticeServer(ServerOptions(limits=limits)) as server:
        write_urls(tmp_path / "urls.txt", [f"{server.url}/fixed?i={i}" for i in range(24)])
        shared.start_worker("-w", "4")
        shared.start_worker("-w", "4")
        args = ["urls.txt", "--summary-json", "summary.json"]
        with shared.coordinator(*args) as coordinator:
            out, err = coordinator.communicate(timeout=60)
        accepted = [d.time for d in server.limits.decisions() if d.accepted]
        refused = server.stats()["limit_refused"]
    assert coordinator.returncode == 0, err.decode()
    records = _records(out)
    assert len(records) == 24 and all(r["ok"] and r["attempts"] == 1 for r in records)
    assert len({r["worker"] for r in records}) == 2  # both workers ran attempts
    # the server's own count: never more than the quota in one of its windows
    assert refused == 0 and len(accepted) == 24
    assert json.loads((tmp_path / "summary.json").read_text())["status_429"] == 0
