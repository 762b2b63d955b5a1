"""State, resume and shutdown with real processes and real signals."""

from __future__ import annotations

import collections
import json
import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest
from support import CLI, run_cli, write_urls

from poolfetch.core.practice import PracticeServer

URL_COUNT = 60


def _start(args: list[str], cwd: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("POOLFETCH_")}
    # unbuffered: communicate() after readline() reads the pipe itself, so records a buffered
    # readline() had already taken from it would be lost to the test
    return subprocess.Popen(
        [*CLI, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=cwd, env=env, bufsize=0
    )


def _wait_for_records(proc: subprocess.Popen[bytes], count: int, timeout: float = 30) -> list[str]:
    """Read records from a running process until ``count`` arrived (bounded by ``timeout``)."""
    assert proc.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while len(lines) < count and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line.decode())
    return lines


def _urls(server: PracticeServer, tmp_path: Path) -> Path:
    return write_urls(
        tmp_path / "urls.txt",
        [f"{server.url}/delay/150?item={i}&pad=1" for i in range(URL_COUNT)],
    )


def _assert_complete_mirror(out: Path, server: PracticeServer) -> None:
    files = [p for p in out.rglob("*") if p.is_file()]
    assert not [p for p in files if p.name.startswith(".poolfetch-")], "temporary files left"
    assert len(files) == URL_COUNT  # every URL exactly once
    assert all(p.stat().st_size > 0 for p in files)
    hits = collections.Counter(e.path for e in server.requests())
    assert max(hits.values()) <= 2, hits.most_common(3)


def _interrupt_then_resume(
    server: PracticeServer, tmp_path: Path, sig: signal.Signals, expected_code: int | None
) -> tuple[list[dict[str, object]], list[dict[str, object]]]:
    args = ["run", "urls.txt", "-o", "out", "--state", "state.db", "--workers", "4"]
    _urls(server, tmp_path)
    with _start(args, tmp_path) as proc:
        first = _wait_for_records(proc, 20)
        proc.send_signal(sig)
        rest, _ = proc.communicate(timeout=30)
        if expected_code is not None:
            assert proc.returncode == expected_code
    first_records = [json.loads(x) for x in first + rest.decode().splitlines()]
    assert 20 <= len(first_records) < URL_COUNT
    second = run_cli(*args, cwd=tmp_path)
    assert second.code == 0, second.stderr
    return first_records, second.records


def test_sigterm_then_the_same_command_resumes(server: PracticeServer, tmp_path: Path) -> None:
    first, second = _interrupt_then_resume(server, tmp_path, signal.SIGTERM, 143)
    assert len(second) == URL_COUNT
    skipped = [r for r in second if r["skipped"] == "done"]
    assert {r["url"] for r in skipped} == {r["url"] for r in first if r["ok"]}
    assert all(r["attempts"] == 0 and r["status"] == 200 and r["path"] for r in skipped)
    _assert_complete_mirror(tmp_path / "out", server)


def test_kill_9_then_the_same_command_resumes(server: PracticeServer, tmp_path: Path) -> None:
    _, second = _interrupt_then_resume(server, tmp_path, signal.SIGKILL, None)
    assert len(second) == URL_COUNT and all(r["ok"] for r in second)
    _assert_complete_mirror(tmp_path / "out", server)
    with sqlite3.connect(tmp_path / "state.db") as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_sigint_exits_130_and_a_second_sigint_exits_at_once(
    server: PracticeServer, tmp_path: Path
) -> None:
    write_urls(tmp_path / "urls.txt", [f"{server.url}/stall-body/100000?i={i}" for i in range(4)])
    with _start(["run", "urls.txt", "-o", "out", "--workers", "4"], tmp_path) as proc:
        deadline = time.monotonic() + 10
        while len(server.requests()) < 4 and time.monotonic() < deadline:
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        time.sleep(0.3)
        started = time.monotonic()
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=10)
        assert time.monotonic() - started < 2.0
        assert proc.returncode == 130
    assert not [p for p in (tmp_path / "out").rglob("*") if p.is_file()]


def test_conditional_refetch_gets_304s_and_replaces_changed_files(
    server: PracticeServer, tmp_path: Path
) -> None:
    write_urls(tmp_path / "urls.txt", [f"{server.url}/etag/r{i}" for i in range(5)])
    args = ["run", "urls.txt", "-o", "out", "--state", "state.db"]
    first = run_cli(*args, cwd=tmp_path)
    assert first.code == 0 and all(r["status"] == 200 for r in first.records)
    paths = {r["url"]: r["path"] for r in first.records}
    server.reset_log()
    second = run_cli(*args, cwd=tmp_path)
    assert second.code == 0
    assert [e.status for e in server.requests()] == [304] * 5
    assert all(r["unchanged"] and r["ok"] and r["status"] == 304 for r in second.records)
    assert {r["url"]: r["path"] for r in second.records} == paths
    server.set_version("r3", 2)
    server.reset_log()
    third = run_cli(*args, cwd=tmp_path)
    changed = next(r for r in third.records if r["url"].endswith("/r3"))
    assert changed["status"] == 200 and not changed["unchanged"]
    assert changed["path"] == paths[changed["url"]]
    assert "version 2" in (tmp_path / changed["path"]).read_text()
    assert sorted(e.status for e in server.requests()) == [200, 304, 304, 304, 304]


def test_a_second_run_on_the_same_state_exits_75_at_once(
    server: PracticeServer, tmp_path: Path
) -> None:
    write_urls(tmp_path / "urls.txt", [f"{server.url}/fixed", f"{server.url}/delay/3000"])
    args = ["run", "urls.txt", "--state", "state.db", "--workers", "1"]
    with _start(args, tmp_path) as proc:
        assert len(_wait_for_records(proc, 1)) == 1  # the first run is under way
        started = time.monotonic()
        second = run_cli(*args, cwd=tmp_path)
        assert time.monotonic() - started < 5
        assert proc.poll() is None, proc.communicate()
        assert second.code == 75
        assert second.stdout == ""
        assert "in use by another poolfetch run" in second.stderr
        proc.communicate(timeout=30)
        assert proc.returncode == 0
    assert len(server.requests()) == 2  # the refused run sent nothing


def test_refresh_starts_a_new_run_after_an_interrupted_one(
    server: PracticeServer, tmp_path: Path
) -> None:
    _urls(server, tmp_path)
    args = ["run", "urls.txt", "--state", "state.db", "--workers", "4"]
    with _start(args, tmp_path) as proc:
        _wait_for_records(proc, 10)
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
    result = run_cli(*args, "--refresh", cwd=tmp_path)
    assert result.code == 0
    assert not [r for r in result.records if r["skipped"]]
    assert len(result.records) == URL_COUNT


def test_results_survive_kill_9_during_a_slow_tail(server: PracticeServer, tmp_path: Path) -> None:
    """Finished URLs are committed within about a second even when nothing finishes after them."""
    urls = [f"{server.url}/etag/tail{i}" for i in range(5)] + [f"{server.url}/delay/20000"]
    write_urls(tmp_path / "urls.txt", urls)
    args = ["run", "urls.txt", "-o", "out", "--state", "state.db", "--workers", "2"]
    with _start(args, tmp_path) as proc:
        assert len(_wait_for_records(proc, 5)) == 5
        time.sleep(2.0)  # the slow URL is still in flight: only a timed commit saves the five
        proc.kill()
        proc.communicate(timeout=10)
    with sqlite3.connect(tmp_path / "state.db") as db:
        assert db.execute("SELECT COUNT(*) FROM urls WHERE ok = 1").fetchone()[0] == 5
    server.reset_log()
    again = run_cli(*args[:-2], "--workers", "2", "--timeout", "0.5", cwd=tmp_path)
    skipped = [r for r in again.records if r["skipped"] == "done"]
    assert len(skipped) == 5
    assert all("/etag/tail" not in e.path for e in server.requests())


def test_a_signal_while_reading_stdin_exits_143(server: PracticeServer, tmp_path: Path) -> None:
    """The admission thread is blocked in a read of stdin: the exit status is still 143."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("POOLFETCH_")}
    with subprocess.Popen(
        [*CLI, "run", "-", "--state", "state.db"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=tmp_path,
        env=env,
    ) as proc:
        assert proc.stdin is not None
        proc.stdin.write(f"{server.url}/fixed\n".encode())
        proc.stdin.flush()  # and keep stdin open, as a slow producer would
        assert len(_wait_for_records(proc, 1)) == 1
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=20)
    assert proc.returncode == 143, stderr.decode()
    assert b"Fatal Python error" not in stderr
    with sqlite3.connect(tmp_path / "state.db") as db:
        assert db.execute("SELECT outcome FROM runs").fetchall() == [("interrupted",)]


def test_a_closed_results_pipe_stops_the_run_like_sigpipe(
    server: PracticeServer, tmp_path: Path
) -> None:
    """`poolfetch run … | head -1`: exit 141, no traceback, summary written, next run resumes."""
    _urls(server, tmp_path)
    args = ["run", "urls.txt", "--state", "state.db", "--workers", "2"]
    with _start([*args, "--summary-json", "summary.json"], tmp_path) as proc:
        assert proc.stdout is not None
        assert proc.stdout.readline()
        proc.stdout.close()  # the reader goes away, as `head -1` does
        proc.wait(timeout=30)
        stderr = proc.stderr.read().decode() if proc.stderr else ""
    assert proc.returncode == 141, stderr
    assert "Traceback" not in stderr and "broken pipe" in stderr
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["interrupted"] == "SIGPIPE"
    with sqlite3.connect(tmp_path / "state.db") as db:
        assert db.execute("SELECT outcome FROM runs").fetchall() == [("interrupted",)]
    again = run_cli(*args, cwd=tmp_path)
    assert again.code == 0
    assert len(again.records) == URL_COUNT
    assert any(r["skipped"] == "done" for r in again.records)


def test_output_dir_added_later_saves_bodies_instead_of_asking_for_304s(
    server: PracticeServer, tmp_path: Path
) -> None:
    """Validators stored by a run without -o must not turn the first run with -o into 304s."""
    write_urls(tmp_path / "urls.txt", [f"{server.url}/etag/later"])
    first = run_cli("run", "urls.txt", "--state", "state.db", cwd=tmp_path)
    assert first.records[0]["path"] is None
    second = run_cli("run", "urls.txt", "--state", "state.db", cwd=tmp_path)
    assert second.records[0]["unchanged"] is True  # no -o: a 304 is all that is needed
    third = run_cli("run", "urls.txt", "--state", "state.db", "-o", "out", cwd=tmp_path)
    record = third.records[0]
    assert record["status"] == 200 and not record["unchanged"]
    assert record["path"] and (tmp_path / record["path"]).read_bytes().startswith(b"resource")


@pytest.mark.parametrize("processes", ["1", "2"])
def test_a_response_completing_within_the_grace_period_is_recorded_and_saved(
    server: PracticeServer, tmp_path: Path, processes: str
) -> None:
    """SIGINT while a URL is in flight: its answer arrives inside the grace period, so its
    record is written, its body saved and the state has it done (the next run skips it);
    with worker processes too (the signal reaches the main process only)."""
    write_urls(tmp_path / "urls.txt", [f"{server.url}/delay/1500"])
    args = ["run", "urls.txt", "-o", "out", "--state", "state.db", "--processes", processes]
    with _start(args, tmp_path) as proc:
        deadline = time.monotonic() + 10
        while not server.connections_opened and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
    assert proc.returncode == 130, err.decode()
    records = [json.loads(line) for line in out.decode().splitlines()]
    assert len(records) == 1 and records[0]["ok"] and records[0]["status"] == 200, records
    assert (tmp_path / records[0]["path"]).read_bytes() == b"delayed 1500 ms\n"
    again = run_cli(*args, cwd=tmp_path)
    assert again.records[0]["skipped"] == "done"


def test_a_new_output_dir_gets_bodies_not_304s_pointing_into_the_old_one(
    server: PracticeServer, tmp_path: Path
) -> None:
    """-o dA, then -o dB on the same state: validators are sent only for bodies under dB."""
    write_urls(tmp_path / "urls.txt", [f"{server.url}/etag/moved"])
    first = run_cli("run", "urls.txt", "--state", "state.db", "-o", "dA", cwd=tmp_path)
    assert first.records[0]["path"].startswith("dA/")
    server.reset_log()
    second = run_cli("run", "urls.txt", "--state", "state.db", "-o", "dB", cwd=tmp_path)
    record = second.records[0]
    assert record["status"] == 200 and not record["unchanged"], record
    assert record["path"].startswith("dB/")
    assert (tmp_path / record["path"]).read_bytes().startswith(b"resource moved")
    assert "If-None-Match" not in server.requests()[0].headers
    third = run_cli("run", "urls.txt", "--state", "state.db", "-o", "dB", cwd=tmp_path)
    assert third.records[0]["unchanged"] and third.records[0]["path"] == record["path"]
