"""The server the clients fetch from: nginx when installed, else the practice server.

Scenarios only see a ``Target``: URL builders for the three kinds of resource (a 200-byte body,
a 100 KB body, and a rate-limited 200-byte body), the access log, the ports (for TIME_WAIT
counting) and the server's worker pids (for its CPU time).
"""

from __future__ import annotations

import contextlib
import json
import select
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from nginx_server import (
    BIG_BODY_BYTES,
    NGINX,
    nginx_version,
    start_nginx,
    stop_group,
    wait_listening,
)

BENCH_DIR = Path(__file__).resolve().parent
_PRACTICE_START_S = 15.0


@dataclass
class Target:
    """Where the benchmark URLs point."""

    kind: str
    version: str
    note: str
    small_base: str
    large_base: str
    limited_base: str
    ports: set[int]
    access_log: Path
    server_pids: Callable[[], list[int]]
    big_base: str = ""  # a 10 MiB body (BIG_BODY_BYTES)

    def small(self, i: int) -> str:
        return f"{self.small_base}?i={i}"

    def large(self, i: int) -> str:
        return f"{self.large_base}?i={i}"

    def big(self, i: int) -> str:
        return f"{self.big_base}?i={i}"

    def limited(self, i: int) -> str:
        return f"{self.limited_base}{i}"


@contextlib.contextmanager
def open_target(tmp: Path, *, force_fallback: bool = False) -> Iterator[Target]:
    """Start nginx (or the fallback), yield the target, always stop the server."""
    if NGINX.exists() and not force_fallback:
        server = start_nginx(tmp)
        try:
            yield Target(
                kind="nginx",
                version=nginx_version() or "?",
                note="",
                small_base=f"{server.base_url}/small",
                large_base=f"{server.base_url}/large",
                limited_base=f"{server.base_url}/limited/",
                ports={server.port},
                access_log=server.access_log,
                server_pids=server.worker_pids,
                big_base=f"{server.base_url}/big",
            )
        finally:
            server.stop()
        return
    why = "--fallback given" if force_fallback else f"nginx not found at {NGINX}"
    yield from _practice_target(tmp, why)


def _practice_target(tmp: Path, why: str) -> Iterator[Target]:
    log = tmp / "access.log"
    process = subprocess.Popen(
        [sys.executable, str(BENCH_DIR / "practice_host.py"), str(log)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], _PRACTICE_START_S)
        if not ready:
            raise RuntimeError("the practice server did not start")
        ports = json.loads(process.stdout.readline() or b"{}")
        port, limited = int(ports["port"]), int(ports["limited_port"])
        wait_listening(port, process, _PRACTICE_START_S)
        yield Target(
            kind="practice server (fallback)",
            version="poolfetch.core.practice",
            note=f"{why}: fell back to poolfetch's practice server, a "
            "threaded Python server that competes with the clients for CPU.",
            small_base=f"http://127.0.0.1:{port}/fixed",
            large_base=f"http://127.0.0.1:{port}/bytes/102400",
            limited_base=f"http://127.0.0.1:{limited}/fixed?i=",
            ports={port, limited},
            access_log=log,
            server_pids=lambda: [process.pid],
            big_base=f"http://127.0.0.1:{port}/bytes/{BIG_BODY_BYTES}",
        )
    finally:
        stop_group(process, signal.SIGTERM)
        if process.stdout is not None:
            process.stdout.close()
