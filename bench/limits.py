"""Servers' own limits, read without hints: poolfetch defaults (and curl) against each.

    python bench/limits.py                      # every scenario, 1,000 URLs, one run each
    python bench/limits.py --scenario conn --urls 400 --repeats 3 --no-curl

Scenarios (what real servers do, as issue 12 lists them; ideal = URLs / the server's rate):

* ``conn``: nginx ``limit_conn 4`` per client address (its default answer, ``503`` without
  ``Retry-After``) before a 100 ms backend (a stdlib upstream): 40 requests/s at most.
* ``bucket``: nginx ``limit_req rate=50r/s`` without ``burst``, ``429`` + ``Retry-After: 1``.
* ``fixed`` / ``moving``: the practice server's fixed and moving windows of 50 requests per
  second answering a bare ``429`` (no ``Retry-After``, no headers).

Each run prints the ideal time, the time taken as a ratio of it, the requests the server
refused (and their share of all it received) and the URLs that ended ok, counted by the server
(nginx's access log, the practice server's own counts). poolfetch runs as users run it:
``poolfetch run FILE --workers 16``, defaults otherwise; curl as ``curl --parallel
--parallel-max 16 --retry 5``. Everything listens on 127.0.0.1 and is stopped at the end.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from clients import curl_command, poolfetch_command, write_urls
from nginx_server import NGINX
from nginx_sites import free_port, read_conn_log, start_site

from poolfetch.core.practice import PracticeServer, ServerOptions
from poolfetch.core.practice_limits import ServerLimits

WORKERS = 16
BACKEND_S = 0.1
CONN_LIMIT = 4
RATE = 50
_RUN_TIMEOUT_S = 600


@dataclass(frozen=True)
class Counts:
    """What the server saw during one run."""

    requests: int
    refused: int
    urls_ok: int


@dataclass(frozen=True)
class Target:
    """A running server: URL ``i``, its ideal requests/s, and what it has seen so far."""

    url: Callable[[int], str]
    rate: float
    counts: Callable[[], Counts]


class _Slow(BaseHTTPRequestHandler):
    """The backend behind nginx: every answer takes ``BACKEND_S``."""

    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        time.sleep(BACKEND_S)
        body = b"ok\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class _Backend(ThreadingHTTPServer):
    request_queue_size = 1024
    daemon_threads = True


@contextmanager
def nginx_target(tmp: Path, kind: str) -> Iterator[Target]:
    backend = _Backend(("127.0.0.1", 0), _Slow)
    thread = threading.Thread(target=backend.serve_forever, daemon=True)
    thread.start()
    port = free_port()
    www = tmp / "www"
    www.mkdir(parents=True, exist_ok=True)
    (www / "f.txt").write_text("x" * 200)
    http_extra = (
        "limit_conn_zone $binary_remote_addr zone=conn:1m;\n"
        f"limit_req_zone $binary_remote_addr zone=bucket:1m rate={RATE}r/s;"
    )
    servers = f"""
server {{
    listen 127.0.0.1:{port};
    root {www};
    location /conn/ {{
        limit_conn conn {CONN_LIMIT};
        proxy_pass http://127.0.0.1:{backend.server_address[1]};
    }}
    location /bucket/ {{
        limit_req zone=bucket;
        limit_req_status 429;
        limit_req_log_level info;
        error_page 429 = @throttled;
        try_files /f.txt =404;
    }}
    location @throttled {{ add_header Retry-After 1 always; return 429 "slow down"; }}
}}"""
    server = start_site(tmp, servers, ("127.0.0.1", port), http_extra)
    seen = 0

    def counts() -> Counts:
        nonlocal seen
        lines = read_conn_log(tmp / "access.log")
        mine, seen = lines[seen:], len(lines)
        refused = sum(1 for line in mine if line.status != 200)
        ok = len({line.uri for line in mine if line.status == 200})
        return Counts(len(mine), refused, ok)

    rate = CONN_LIMIT / BACKEND_S if kind == "conn" else RATE
    try:
        yield Target(lambda i: f"http://127.0.0.1:{port}/{kind}/{i}", rate, counts)
    finally:
        server.stop()
        backend.shutdown()
        backend.server_close()


@contextmanager
def window_target(kind: str) -> Iterator[Target]:
    limits = ServerLimits(window=kind, window_limit=RATE, window_s=1.0)
    with PracticeServer(ServerOptions(limits=limits)) as server:
        before = {"limit_accepted": 0, "limit_refused": 0}
        seen = 0

        def counts() -> Counts:
            nonlocal before, seen
            now = server.stats()
            log = server.requests()
            mine, seen = log[seen:], len(log)
            accepted = now["limit_accepted"] - before["limit_accepted"]
            refused = now["limit_refused"] - before["limit_refused"]
            before = now
            ok = len({entry.path for entry in mine if entry.status == 200})
            return Counts(accepted + refused, refused, ok)

        yield Target(lambda i: f"{server.url}/fixed?i={i}", float(RATE), counts)


SCENARIOS = ("conn", "bucket", "fixed", "moving")


@contextmanager
def open_target(kind: str, tmp: Path) -> Iterator[Target]:
    if kind in ("conn", "bucket"):
        with nginx_target(tmp / kind, kind) as target:
            yield target
    else:
        with window_target(kind) as target:
            yield target


def run_one(target: Target, urls: int, client: str, tmp: Path) -> str:
    urlfile = write_urls(tmp / f"urls-{client}.txt", (target.url(i) for i in range(urls)))
    if client == "curl":
        outdir = tmp / "curl-bodies"
        outdir.mkdir(exist_ok=True)
        command = curl_command(urlfile, WORKERS, ["--retry", "5"], outdir)
    else:
        command = poolfetch_command(urlfile, WORKERS)
    started = time.monotonic()
    done = subprocess.run(command, capture_output=True, timeout=_RUN_TIMEOUT_S, check=False)
    took = time.monotonic() - started
    counts = target.counts()
    ideal = urls / target.rate
    share = 100.0 * counts.refused / counts.requests if counts.requests else 0.0
    return (
        f"| {client} | {ideal:.1f} | {took:.1f} | {took / ideal:.2f} | "
        f"{counts.refused} ({share:.1f} %) | {counts.urls_ok}/{urls} | {done.returncode} |"
    )


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", action="append", choices=SCENARIOS)
    parser.add_argument("--urls", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--no-curl", action="store_true")
    args = parser.parse_args(argv)
    clients = ["poolfetch"]
    if not args.no_curl and shutil.which("curl"):
        clients.append("curl")
    chosen = args.scenario or list(SCENARIOS)
    if not NGINX.exists():
        print(f"nginx not found at {NGINX}: skipping conn and bucket", file=sys.stderr)
        chosen = [s for s in chosen if s not in ("conn", "bucket")]
    print("| scenario | client | ideal s | time s | × ideal | refused | URLs ok | exit |")
    print("|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory(prefix="poolfetch-limits-") as folder:
        tmp = Path(folder)
        for kind in chosen:
            with open_target(kind, tmp) as target:
                for _ in range(args.repeats):
                    for client in clients:
                        print(f"| {kind} " + run_one(target, args.urls, client, tmp), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
