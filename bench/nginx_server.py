"""A private nginx for the benchmarks: generated config, started and stopped by us.

Why nginx: it is a fast, single-threaded C server, so on a two-core machine the clients, not the
server, are what the numbers measure, and its access log records the connection serial number and
the time of every request (``$connection $msec $status $request_time $request_uri``), which is how
the benchmarks count TCP connections, 429 answers and request rates from the server's side.

Everything lives in one temporary folder (config, pid file, logs, temp paths, bodies), nothing is
written to root-owned paths, and nginx runs in the foreground (``daemon off``) in its own process
group, so stopping it is a ``killpg`` of a process we started.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

NGINX = Path("/usr/sbin/nginx")
SMALL_BODY_BYTES = 200
LARGE_BODY_BYTES = 100 * 1024
BIG_BODY_BYTES = 10 * 1024 * 1024
LIMIT_RATE = 50
LIMIT_BURST = 10
_START_TIMEOUT_S = 10.0
_STOP_TIMEOUT_S = 5.0

#: What every config of ours has inside ``http``: nginx's temporary files in the run's own
#: folder (nothing under root-owned paths) and long keep-alive.
HTTP_COMMON = """\
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    keepalive_requests 100000;
    keepalive_timeout 60s;"""

CONFIG_TEMPLATE = """\
worker_processes 1;
error_log {tmp}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    default_type text/plain;
    log_format bench '$connection $msec $status $request_time $request_uri';
    access_log {tmp}/access.log bench;
{common}
    sendfile on;
    tcp_nodelay on;
    limit_req_zone $server_name zone=api:1m rate={rate}r/s;
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        server_name bench;
        root {tmp}/www;
        location /small {{ return 200 "{small}"; }}
        location /large {{ try_files /large.bin =404; }}
        location /big {{ try_files /big.bin =404; }}
        # limit_req runs in the preaccess phase, after 'return' (rewrite phase) would already
        # have answered: serve a file so the limit applies.
        location /limited/ {{
            limit_req zone=api burst={burst} nodelay;
            limit_req_status 429;
            limit_req_log_level info;
            error_page 429 = @throttled;
            try_files /small.txt =404;
        }}
        location @throttled {{
            add_header Retry-After 1 always;
            return 429 "slow down";
        }}
    }}
}}
"""


def free_port(host: str = "127.0.0.1") -> int:
    """A port that was free a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def small_body() -> bytes:
    """The exact 200-byte body of ``/small`` (and of a successful ``/limited/``)."""
    return b"s" * (SMALL_BODY_BYTES - 1) + b"\n"


def nginx_version() -> str | None:
    """``nginx/1.22.1`` or None when nginx is not installed."""
    if not NGINX.exists():
        return None
    done = subprocess.run(
        [str(NGINX), "-v"], capture_output=True, text=True, timeout=10, check=False
    )
    return (done.stderr or done.stdout).strip().removeprefix("nginx version: ")


@dataclass
class NginxServer:
    """A running nginx; ``base_url`` has no trailing slash."""

    tmp: Path
    port: int
    process: subprocess.Popen[bytes]
    host: str = "127.0.0.1"

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def access_log(self) -> Path:
        return self.tmp / "access.log"

    def worker_pids(self) -> list[int]:
        """The worker process(es), whose CPU time is the server's cost of a run."""
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        with contextlib.suppress(OSError):
            return [int(pid) for pid in children.read_text().split()]
        return []

    def stop(self) -> None:
        """Graceful quit, then SIGKILL of the whole process group if it lingers."""
        if self.process.poll() is None:
            stop_group(self.process, signal.SIGQUIT)


def stop_group(process: subprocess.Popen[bytes], first: signal.Signals) -> None:
    """Send ``first`` to the process group we started, then SIGKILL if it lingers (bounded)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, first)
    try:
        process.wait(_STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(_STOP_TIMEOUT_S)


def write_files(tmp: Path, port: int) -> Path:
    """The config and the bodies; returns the config path. World-readable: when we are root,
    nginx's worker runs as an unprivileged user and must read the bodies."""
    www = tmp / "www"
    www.mkdir(parents=True, exist_ok=True)
    (www / "small.txt").write_bytes(small_body())
    (www / "large.bin").write_bytes(
        (b"0123456789abcdef" * (LARGE_BODY_BYTES // 16 + 1))[:LARGE_BODY_BYTES]
    )
    (www / "big.bin").write_bytes(os.urandom(BIG_BODY_BYTES))
    small = small_body().decode().rstrip("\n") + "\\n"
    conf = tmp / "nginx.conf"
    conf.write_text(
        CONFIG_TEMPLATE.format(
            tmp=tmp,
            common=HTTP_COMMON.format(tmp=tmp),
            port=port,
            small=small,
            rate=LIMIT_RATE,
            burst=LIMIT_BURST,
        ),
        encoding="utf-8",
    )
    for path in (tmp, www, *www.iterdir()):
        path.chmod(0o755 if path.is_dir() else 0o644)
    return conf


def start_nginx(tmp: Path) -> NginxServer:
    """Start the benchmark nginx on a free port of 127.0.0.1 and wait until it answers."""
    port = free_port()
    return launch(tmp, write_files(tmp, port), ("127.0.0.1", port))


def launch(tmp: Path, conf: Path, probe: tuple[str, int]) -> NginxServer:
    """Start nginx with config ``conf`` (prefix and logs in ``tmp``) in its own process group and
    wait until ``probe`` (host, port) accepts connections."""
    command = [
        str(NGINX),
        "-e",
        str(tmp / "error.log"),
        "-p",
        str(tmp),
        "-c",
        str(conf),
        "-g",
        f"daemon off; pid {tmp}/nginx.pid;",
    ]
    process = subprocess.Popen(
        command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, start_new_session=True
    )
    server = NginxServer(tmp, probe[1], process, probe[0])
    try:
        wait_listening(probe[1], process, _START_TIMEOUT_S, probe[0])
    except BaseException:
        server.stop()
        raise
    return server


def wait_listening(
    port: int, process: subprocess.Popen[bytes], timeout: float, host: str = "127.0.0.1"
) -> None:
    """Poll until something accepts on ``host:port`` (bounded), failing early if ``process``
    died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with status {process.returncode} at startup")
        with contextlib.suppress(OSError), socket.create_connection((host, port), 0.5):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listening on {host}:{port} after {timeout:.0f} s")
