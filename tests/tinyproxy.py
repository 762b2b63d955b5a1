"""A real forward proxy for the integration tests: Debian's ``tinyproxy``, with its own config
and log in a test folder, on a free loopback port, stopped by its PID."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from support import require_service

_START_TIMEOUT_S = 10.0
_STOP_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class Tinyproxy:
    """A running tinyproxy: its URL and what its log says it did."""

    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def requests(self) -> list[str]:
        """The request lines it was asked to forward (``GET http://… HTTP/1.1``,
        ``CONNECT host:port HTTP/1.1``), in order."""
        if not self.log.exists():
            return []
        marker = "Request (file descriptor"
        return [
            line.split("): ", 1)[1]
            for line in self.log.read_text(errors="replace").splitlines()
            if marker in line and "): " in line
        ]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def tinyproxy(folder: Path) -> Iterator[Tinyproxy]:
    """Run tinyproxy in the foreground until the block ends (ready once it accepts)."""
    binary = require_service("tinyproxy")
    folder.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    log = folder / "tinyproxy.log"
    conf = folder / "tinyproxy.conf"
    conf.write_text(
        f'Port {port}\nListen 127.0.0.1\nTimeout 30\nLogFile "{log}"\nLogLevel Info\n'
        "MaxClients 50\nAllow 127.0.0.1\n",
        encoding="utf-8",
    )
    process = subprocess.Popen(
        [binary, "-d", "-c", str(conf)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + _START_TIMEOUT_S
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                break
            if process.poll() is not None or time.monotonic() > deadline:
                said = log.read_text(errors="replace") if log.exists() else "no log"
                raise RuntimeError(f"tinyproxy did not start: {said}")
            time.sleep(0.05)
        yield Tinyproxy(port, log)
    finally:
        process.terminate()
        try:
            process.wait(_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(_STOP_TIMEOUT_S)
