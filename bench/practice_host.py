"""Fallback benchmark server when nginx is not installed: poolfetch's practice server.

This is the server behind ``poolfetch serve``, run here in a process of its own with a request log
in the nginx format the harness reads (``connection msec status request_time uri``); ``poolfetch
serve`` itself keeps no such log. Two instances: a plain one (``/fixed`` = 200 bytes, ``/bytes/N``)
and one limited to 50 requests/s with a burst of 10 that answers 429 with ``Retry-After: 1``, like
the nginx ``/limited/`` location. Connection ids of the limited one are offset so both can share one
log.

It is a threaded Python server: on a small machine it competes with the clients for CPU, so its
numbers say less about the clients than nginx's do. The harness says so when it falls back.

Usage (the harness starts it): ``python practice_host.py LOGFILE``; it prints one JSON line with the
two ports, then serves until SIGTERM/SIGINT.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
from pathlib import Path
from typing import TextIO

from poolfetch.core.practice import PracticeServer, RequestLogEntry, ServerOptions

LIMITED_CONNECTION_OFFSET = 1_000_000_000


class LoggedPracticeServer(PracticeServer):
    """A practice server whose request log goes to a file instead of memory (flat memory
    however many requests a benchmark sends)."""

    def __init__(self, options: ServerOptions, log: TextIO, lock: threading.Lock, offset: int):
        super().__init__(options)
        self._file = log
        self._file_lock = lock
        self._offset = offset

    def record(self, entry: RequestLogEntry) -> None:
        took = max(0.0, time.monotonic() - entry.time)
        conn = entry.connection + self._offset
        line = f"{conn} {time.time():.3f} {entry.status} {took:.3f} {entry.path}\n"
        with self._file_lock:
            self._file.write(line)
            self._file.flush()


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: practice_host.py LOGFILE", file=sys.stderr)
        return 2
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    lock = threading.Lock()
    with Path(argv[0]).open("a", encoding="utf-8") as log:
        plain = LoggedPracticeServer(ServerOptions(), log, lock, 0)
        limited_options = ServerOptions(rate_limit=50, rate_burst=10, retry_after="1")
        limited = LoggedPracticeServer(limited_options, log, lock, LIMITED_CONNECTION_OFFSET)
        plain.start()
        try:
            limited.start()
            print(json.dumps({"port": plain.port, "limited_port": limited.port}), flush=True)
            while not stop.wait(0.5):
                pass
        finally:
            limited.stop()
            plain.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
