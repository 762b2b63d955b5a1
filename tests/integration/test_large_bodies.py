"""Large bodies through the real CLI: -C/--continue resumes with Range, --limit-rate paces.

The practice server's ``/large/ID/N`` has validators, answers Range and If-Range, trickles at
``rate`` bytes/s and cuts its answers after ``cut`` bytes; its request log shows what the second
run really asked for.
"""

from __future__ import annotations

import hashlib
import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest
from nginx import free_port, nginx_site, read_conn_log
from support import CLI, run_cli, write_urls

from poolfetch.core.practice import PracticeServer
from poolfetch.core.practice_ranges import large_body, validators

ARGS = ["run", "urls.txt", "-C", "-o", "out", "--state", "s.db", "--timeout", "1"]


def _start(cwd: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("POOLFETCH_")}
    return subprocess.Popen(
        [*CLI, *ARGS], stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=cwd, env=env
    )


def _partials(out: Path) -> list[Path]:
    return list(out.rglob(".poolfetch-partial-*")) if out.exists() else []


def _cut_off(tmp_path: Path, url: str, at: int, sig: signal.Signals) -> tuple[int, bytes]:
    """Start a -C run of ``url``, stop it with ``sig`` once its partial file holds ``at``
    bytes; return its exit code and standard output."""
    write_urls(tmp_path / "urls.txt", [url])
    with _start(tmp_path) as proc:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            files = _partials(tmp_path / "out")
            if files and files[0].stat().st_size >= at:
                break
            time.sleep(0.02)
        else:
            proc.kill()
            pytest.fail("the partial file never grew")
        proc.send_signal(sig)
        stdout, _ = proc.communicate(timeout=20)
    return proc.returncode, stdout


def _only_partial(tmp_path: Path) -> Path:
    files = [p for p in (tmp_path / "out").rglob("*") if p.is_file()]
    assert len(files) == 1, files  # no body at its final name, only the hidden partial file
    assert files[0].name.startswith(".poolfetch-partial-")
    return files[0]


def _assert_resumed_whole(tmp_path: Path, server: PracticeServer, size: int, have: int) -> None:
    """The second run asked for the rest only and the file is the full body."""
    second = run_cli(*ARGS, cwd=tmp_path)
    assert second.code == 0, second.stderr
    [record] = second.records
    body = large_body(size)
    assert record["ok"] and record["status"] == 206
    assert record["resumed_from"] == have and record["bytes"] == size
    assert Path(tmp_path / record["path"]).read_bytes() == body
    first_request, resumed = server.requests()[0], server.requests()[-1]
    assert "Range" not in first_request.headers
    assert resumed.headers["Range"] == f"bytes={have}-"
    assert resumed.headers["If-Range"].startswith('"')
    digest = hashlib.sha256(body).hexdigest()
    assert record["sha256"] == digest
    with sqlite3.connect(tmp_path / "s.db") as db:
        assert db.execute("SELECT digest FROM urls").fetchall() == [(digest,)]
        assert db.execute("SELECT count(*) FROM partials").fetchone() == (0,)
    db.close()
    assert not _partials(tmp_path / "out")


def test_sigterm_at_half_then_the_same_command_resumes_with_range(
    server: PracticeServer, tmp_path: Path
) -> None:
    size = 2_000_000  # 4 s at the trickle: the 1 s grace (--timeout 1) cannot finish it
    code, stdout = _cut_off(
        tmp_path, f"{server.url}/large/t/{size}?rate=500000", size // 2, signal.SIGTERM
    )
    assert code == 143
    assert b'"ok": true' not in stdout  # a partial body is never reported
    partial = _only_partial(tmp_path)
    have = partial.stat().st_size
    assert size // 2 <= have < size
    assert partial.read_bytes() == large_body(size)[:have]
    _assert_resumed_whole(tmp_path, server, size, have)


def test_kill_9_at_half_leaves_a_resumable_partial_and_sound_state(
    server: PracticeServer, tmp_path: Path
) -> None:
    size = 2_000_000
    code, _ = _cut_off(
        tmp_path, f"{server.url}/large/k/{size}?rate=1000000", size // 2, signal.SIGKILL
    )
    assert code == -signal.SIGKILL
    have = _only_partial(tmp_path).stat().st_size
    with sqlite3.connect(tmp_path / "s.db") as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        [(validator,)] = db.execute("SELECT validator FROM partials").fetchall()
    db.close()
    assert validator == validators("k", 1, size)[0]  # the ETag of the first answer
    _assert_resumed_whole(tmp_path, server, size, have)


def test_a_resource_whose_etag_changed_is_fetched_whole(
    server: PracticeServer, tmp_path: Path
) -> None:
    size = 1_000_000
    _cut_off(tmp_path, f"{server.url}/large/c/{size}?rate=1000000", size // 4, signal.SIGKILL)
    server.set_version("c", 2)
    second = run_cli(*ARGS, cwd=tmp_path)
    assert second.code == 0, second.stderr
    [record] = second.records
    assert record["status"] == 200 and record["bytes"] == size and "resumed_from" not in record
    assert Path(tmp_path / record["path"]).read_bytes() == large_body(size, version=2)
    asked = server.requests()[-1].headers
    assert asked["Range"].startswith("bytes=") and asked["If-Range"].startswith('"')


def test_a_complete_partial_gets_416_and_is_fetched_whole(
    server: PracticeServer, tmp_path: Path
) -> None:
    """Killed between the last byte and the rename: the server says 416, poolfetch does not
    trust the file and fetches the body whole (docs/design.md, "Partial bodies")."""
    size = 400_000
    _cut_off(tmp_path, f"{server.url}/large/f/{size}?rate=400000", size // 4, signal.SIGKILL)
    partial = _only_partial(tmp_path)
    partial.write_bytes(large_body(size))  # as if every byte had arrived
    second = run_cli(*ARGS, cwd=tmp_path)
    assert second.code == 0, second.stderr
    [record] = second.records
    assert record["ok"] and record["status"] == 200 and record["attempts"] == 2
    assert Path(tmp_path / record["path"]).read_bytes() == large_body(size)
    answered = [(e.status, e.headers.get("Range")) for e in server.requests()[1:]]
    assert answered == [(416, f"bytes={size}-"), (200, None)]


def test_resets_mid_body_are_resumed_within_the_run(server: PracticeServer, tmp_path: Path) -> None:
    size = 1_000_000
    write_urls(tmp_path / "urls.txt", [f"{server.url}/large/r/{size}?cut=300000"])
    result = run_cli(*ARGS, "--retries", "10", "--backoff", "0", cwd=tmp_path)
    assert result.code == 0, result.stderr
    [record] = result.records
    starts = [int((e.headers.get("Range") or "bytes=0-")[6:-1]) for e in server.requests()]
    assert starts[0] == 0 and starts == sorted(set(starts)) and len(starts) >= 4
    assert record["attempts"] == len(starts) and record["resumed_from"] == starts[-1]
    assert Path(tmp_path / record["path"]).read_bytes() == large_body(size)


def test_a_stall_mid_body_is_resumed_after_the_read_timeout(
    server: PracticeServer, tmp_path: Path
) -> None:
    size = 600_000
    write_urls(tmp_path / "urls.txt", [f"{server.url}/large/s/{size}?cut=300000&stall=1"])
    result = run_cli(*ARGS, "--backoff", "0", cwd=tmp_path)  # --timeout 1
    assert result.code == 0, result.stderr
    [record] = result.records
    ranges = [e.headers.get("Range") for e in server.requests()]
    assert ranges[0] is None and ranges[-1] == f"bytes={record['resumed_from']}-"
    assert record["resumed_from"] > 0 and record["attempts"] == len(ranges)
    assert Path(tmp_path / record["path"]).read_bytes() == large_body(size)


def test_refresh_removes_partials_of_urls_no_longer_listed(
    server: PracticeServer, tmp_path: Path
) -> None:
    _cut_off(tmp_path, f"{server.url}/large/g/400000?rate=400000", 100_000, signal.SIGKILL)
    _only_partial(tmp_path)
    write_urls(tmp_path / "urls.txt", [f"{server.url}/fixed"])
    result = run_cli(*ARGS, "--refresh", cwd=tmp_path)
    assert result.code == 0, result.stderr
    assert not _partials(tmp_path / "out")
    with sqlite3.connect(tmp_path / "s.db") as db:
        assert db.execute("SELECT count(*) FROM partials").fetchone() == (0,)
    db.close()


def test_kill_9_then_resume_against_nginx(tmp_path: Path) -> None:
    """nginx's own Range/If-Range (its ETag) and limit_rate: the resumed file is the file."""
    www = tmp_path / "www"
    www.mkdir()
    body = os.urandom(1_000_000)
    (www / "big.bin").write_bytes(body)
    port = free_port()
    site = f"""
    server {{
        listen 127.0.0.1:{port};
        root {www};
        location / {{ limit_rate 1m; }}
    }}"""
    with nginx_site(tmp_path / "nginx", site, ("127.0.0.1", port)) as nginx:
        url = f"http://127.0.0.1:{port}/big.bin"
        _cut_off(tmp_path, url, 300_000, signal.SIGKILL)
        have = _only_partial(tmp_path).stat().st_size
        second = run_cli(*ARGS, cwd=tmp_path)
        assert second.code == 0, second.stderr
        [record] = second.records
        assert record["status"] == 206 and record["resumed_from"] == have
        assert Path(tmp_path / record["path"]).read_bytes() == body
        statuses = [line.status for line in read_conn_log(nginx.tmp / "access.log")]
        assert statuses[-1] == 206


@pytest.mark.parametrize("given", [["-o", "out"], ["--state", "s.db"], []])
def test_continue_needs_output_dir_and_state(tmp_path: Path, given: list[str]) -> None:
    result = run_cli("run", "-C", *given, input="http://127.0.0.1:9/\n", cwd=tmp_path)
    assert result.code == 2
    assert "--continue" in result.stderr and "-o/--output-dir" in result.stderr
    assert "--state" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("option", [["-C", "-o", "out", "--state", "s.db"], ["--limit-rate", "1M"]])
def test_continue_and_limit_rate_are_refused_with_redis(tmp_path: Path, option: list[str]) -> None:
    result = run_cli("run", *option, "--redis", "redis://127.0.0.1:9/0", input="", cwd=tmp_path)
    assert result.code == 2 and "not with --redis" in result.stderr


def test_limit_rate_paces_a_body(server: PracticeServer, tmp_path: Path) -> None:
    """2 MiB at --limit-rate 1M: about 2 s (the exact figure is bench --scenario limit-rate)."""
    result = run_cli(
        "run", "--limit-rate", "1M", input=f"{server.url}/bytes/2097152\n", cwd=tmp_path
    )
    assert result.code == 0, result.stderr
    [record] = result.records
    assert record["bytes"] == 2097152
    assert 1600 <= record["elapsed_ms"] <= 3000
