"""--max-host-errors through the real CLI: a dead host among live ones is given up after a few
connection failures, its remaining URLs fail at once (attempts 0) and the live host's URLs all
succeed; the run ends in seconds instead of after every URL's retries and timeouts."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from rawserver import RawServer
from support import run_cli, write_urls

from poolfetch.core.practice import PracticeServer

DEAD_URLS = 40
WORKERS = 4
LIMIT = 3


def _never_answers(sock: socket.socket, head: bytes) -> None:
    sock.recv(1)  # until the client gives up and closes (or the server stops)


@contextmanager
def _dead_host(kind: str) -> Iterator[str]:
    """Base URL of a host that refuses connections, or accepts and never answers."""
    if kind == "silent":
        with RawServer(_never_answers) as silent:
            yield silent.url
        return
    with socket.socket() as sock:
        sock.bind(("127.0.0.3", 0))
        port = sock.getsockname()[1]
    yield f"http://127.0.0.3:{port}"  # nothing listens there: refused


@pytest.mark.parametrize("kind", ["refused", "silent"])
def test_a_dead_host_is_given_up_and_the_live_host_goes_on(
    server: PracticeServer, tmp_path: Path, kind: str
) -> None:
    with _dead_host(kind) as dead:
        lines = []
        for i in range(DEAD_URLS):
            lines.append(f"{dead}/item/{i}")
            if i % 2 == 0:
                lines.append(f"{server.url}/fixed?i={i}")
        urls = write_urls(tmp_path / "u.txt", lines)
        started = time.monotonic()
        result = run_cli(
            "run", str(urls), "-w", str(WORKERS), "--timeout", "1", "--backoff", "0.2",
            "--max-host-errors", str(LIMIT),
        )  # fmt: skip
        elapsed = time.monotonic() - started
    assert "Traceback" not in result.stderr, result.stderr
    assert result.code == 1
    records = {r["url"]: r for r in result.records}
    assert len(records) == len(lines)
    live = [r for url, r in records.items() if url.startswith(server.url)]
    assert live and all(r["ok"] and r["status"] == 200 for r in live)
    gone = [r for url, r in records.items() if url.startswith(dead)]
    assert len(gone) == DEAD_URLS
    assert all(not r["ok"] and "given up" in r["error"] for r in gone), gone[:3]
    # at most the limit plus what was already in flight reached the dead host
    assert sum(r["attempts"] for r in gone) <= LIMIT + WORKERS
    assert sum(r["attempts"] == 0 for r in gone) >= DEAD_URLS - LIMIT - WORKERS
    # without it: 40 URLs x 4 attempts x a 1 s timeout over 4 workers is 40 s for "silent"
    assert elapsed < 15, elapsed


def test_zero_turns_giving_up_off(tmp_path: Path) -> None:
    with _dead_host("refused") as dead:
        # 24 attempts: past the default limit (20), so only 0 lets every URL retry
        urls = write_urls(tmp_path / "u.txt", [f"{dead}/{i}" for i in range(12)])
        result = run_cli(
            "run", str(urls), "--max-host-errors", "0", "--retries", "1", "--backoff", "0"
        )
    assert [r["attempts"] for r in result.records] == [2] * 12
    assert not any("given up" in r["error"] for r in result.records)
