"""Practice servers with per-client limits for the ``server-limits`` benchmark, in a process.

``python limits_host.py LOGDIR SPEC``: SPEC is JSON ``{"NAME": {ServerLimits fields}, ...}``. One
practice server per NAME (request log in the nginx format the harness reads, ``LOGDIR/NAME.log``)
and one plain ``upstream`` (no limits, no log: the slow backend nginx proxies to). Prints one JSON
line ``{"NAME": port, ..., "upstream": port}``, then reads commands on stdin: ``reset NAME`` gives
that server a fresh limiter (so each client run starts with a full quota) and answers ``ok``.
Ends at EOF on stdin, SIGTERM or SIGINT.
"""

from __future__ import annotations

import contextlib
import json
import signal
import sys
import threading
from pathlib import Path
from typing import TextIO

from practice_host import LoggedPracticeServer

from poolfetch.core.practice import PracticeServer, ServerOptions
from poolfetch.core.practice_limits import ServerLimiter, ServerLimits


def _commands(servers: dict[str, PracticeServer], out: TextIO, stop: threading.Event) -> None:
    for line in sys.stdin:
        verb, _, name = line.strip().partition(" ")
        server = servers.get(name)
        if verb == "reset" and server is not None:
            server.limits = ServerLimiter(server.options.limits)
            out.write("ok\n")
        else:
            out.write(f"error: {line.strip()!r}\n")
        out.flush()
    stop.set()


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: limits_host.py LOGDIR SPEC_JSON", file=sys.stderr)
        return 2
    logdir = Path(argv[0])
    spec = json.loads(argv[1])
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    lock = threading.Lock()
    servers: dict[str, PracticeServer] = {}
    with contextlib.ExitStack() as stack:
        for name, fields in spec.items():
            log = stack.enter_context((logdir / f"{name}.log").open("a", encoding="utf-8"))
            options = ServerOptions(limits=ServerLimits(**fields))
            servers[name] = stack.enter_context(LoggedPracticeServer(options, log, lock, 0))
        servers["upstream"] = stack.enter_context(PracticeServer(ServerOptions()))
        print(json.dumps({name: server.port for name, server in servers.items()}), flush=True)
        reader = threading.Thread(target=_commands, args=(servers, sys.stdout, stop), daemon=True)
        reader.start()
        while not stop.wait(0.5):
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
