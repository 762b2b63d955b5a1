"""A new user's walkthrough (2026-12-01, fifth session): what it found, end to end through the
real CLI against loopback servers."""

from __future__ import annotations

import json
import os
import random
import socket
import sqlite3
import stat
import threading
from pathlib import Path

import pytest
from support import run_cli, write_urls

from poolfetch.core.practice import PracticeServer


@pytest.mark.parametrize(
    ("extra", "victim"),
    [
        (["--results", "urls.txt"], "urls.txt"),
        (["--summary-json", "urls.txt"], "urls.txt"),
        (["--state", "state.db", "--results", "state.db"], "state.db"),
    ],
    ids=["results-is-the-source", "summary-is-the-source", "results-is-the-state"],
)
def test_an_output_that_is_an_input_or_the_state_is_refused_and_destroys_nothing(
    server: PracticeServer, tmp_path: Path, extra: list[str], victim: str
) -> None:
    """`--results FILE` is truncated before the list is read: naming the list lost it (exit 0,
    0 URLs); naming the state file broke the state and hung the run on a traceback."""
    write_urls(tmp_path / "urls.txt", [f"{server.url}/fixed?i={i}" for i in range(3)])
    if victim == "state.db":
        assert run_cli("run", "urls.txt", "--state", "state.db", cwd=tmp_path).code == 0
        server.reset_log()
    before = (tmp_path / victim).read_bytes()
    result = run_cli("run", "urls.txt", *extra, cwd=tmp_path, timeout=30)
    assert result.code == 2, result.stderr
    assert "would destroy it" in result.stderr and "Traceback" not in result.stderr
    assert (tmp_path / victim).read_bytes() == before
    assert server.requests() == []
    if victim == "state.db":
        with sqlite3.connect(tmp_path / "state.db") as db:
            assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)


def test_a_summary_json_that_is_a_fifo_is_written_into_not_replaced(
    server: PracticeServer, tmp_path: Path
) -> None:
    """`--summary-json /dev/stdout` or a named pipe: the summary was written to a temporary
    file renamed over it, so the pipe (as root, even /dev/null) became a regular file."""
    write_urls(tmp_path / "urls.txt", [f"{server.url}/fixed"])
    fifo = tmp_path / "summary.fifo"
    os.mkfifo(fifo)
    os.link(fifo, tmp_path / "keep.fifo")  # the pipe itself, should its name be replaced
    received: list[bytes] = []

    def read() -> None:
        with open(fifo, "rb") as pipe:
            received.append(pipe.read())

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    result = run_cli("run", "urls.txt", "-q", "--summary-json", "summary.fifo", cwd=tmp_path)
    reader.join(10)
    if reader.is_alive():  # nobody wrote into the pipe: let the reader go
        os.close(os.open(tmp_path / "keep.fifo", os.O_WRONLY | os.O_NONBLOCK))
        reader.join(5)
    assert result.code == 0, result.stderr
    assert stat.S_ISFIFO(fifo.stat().st_mode)
    assert json.loads(received[0])["total"] == 1


def test_an_unreachable_redis_still_writes_the_summary_json(tmp_path: Path) -> None:
    """README: Redis unreachable or gone, exit 69 and `--summary-json` written. Unreachable
    at the start wrote nothing, so a cron job read the previous run's summary as this one's."""
    write_urls(tmp_path / "urls.txt", ["http://127.0.0.1:9/"])
    (tmp_path / "summary.json").write_text('{"total": 5, "ok": 5, "interrupted": null}\n')
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = run_cli(
        "run", "--redis", f"redis://127.0.0.1:{port}/0", "urls.txt", "--qps", "30/m",
        "--summary-json", "summary.json", cwd=tmp_path, timeout=60,
    )  # fmt: skip
    assert result.code == 69, result.stderr
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["interrupted"] == "redis-unavailable"
    assert (summary["total"], summary["ok"], summary["requests"]) == (0, 0, 0)
    assert summary["rates"]["qps"] == {"given": "30/m", "per_s": 0.5}


def test_a_damaged_state_file_is_a_clear_error_not_a_traceback_or_a_hang(
    server: PracticeServer, tmp_path: Path
) -> None:
    """A state file whose header reads but whose pages do not (a bad disk, a torn copy)
    opened fine, then the run died on a traceback with exit 1 (or hung, its workers
    started, when the first read was of the runs table)."""
    write_urls(tmp_path / "urls.txt", [f"{server.url}/fixed?i={i}" for i in range(50)])
    assert run_cli("run", "urls.txt", "--state", "state.db", cwd=tmp_path).code == 0
    state = tmp_path / "state.db"
    data = bytearray(state.read_bytes())
    noise = random.Random(7)
    data[4096:] = bytes(noise.randrange(256) for _ in range(len(data) - 4096))
    state.write_bytes(bytes(data))
    result = run_cli("run", "urls.txt", "--state", "state.db", cwd=tmp_path, timeout=30)
    assert result.code == 2, result.stderr
    assert "--state state.db" in result.stderr and "Traceback" not in result.stderr
