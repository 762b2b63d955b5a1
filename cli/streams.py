"""Standard streams closed at start (``<&-``, ``>&-``, ``2>&-``, some daemons and schedulers).

Python leaves ``sys.stdin``/``sys.stdout``/``sys.stderr`` as ``None`` then, and the next file
the process opens (the state database, a body file, a socket) takes the free descriptor 0, 1
or 2. ``guard_standard_streams`` runs first thing: it puts ``/dev/null`` on every closed one,
so no file of the run can become "standard output", and gives Python a stream on it, so no
``None`` reaches the code. What was closed is remembered. Human output on a closed stderr is
discarded, as the user asked. The records and the URLs are never silently lost:
``closed_problem`` turns standard input or output that a run needs into a usage error before
any request.
"""

from __future__ import annotations

import os
import sys

STDIN, STDOUT, STDERR = 0, 1, 2
_NAMES = {STDIN: "standard input", STDOUT: "standard output", STDERR: "standard error"}
_closed: set[int] = set()


def guard_standard_streams() -> None:
    """Put ``/dev/null`` on each standard stream closed at start (see the module)."""
    for fd, name in ((STDIN, "stdin"), (STDOUT, "stdout"), (STDERR, "stderr")):
        if getattr(sys, name) is not None:
            continue
        _closed.add(fd)
        try:
            os.fstat(fd)  # taken already (by a file an import opened): leave it be
        except OSError:
            null = os.open(os.devnull, os.O_RDWR)
            if null != fd:
                os.dup2(null, fd)
                os.close(null)
        mode = "r" if fd == STDIN else "w"
        setattr(sys, name, open(os.devnull, mode, encoding="utf-8"))  # noqa: SIM115


def closed_problem(fd: int, advice: str) -> str | None:
    """A usage error's text if ``fd`` was closed at start and the run needs it (``advice``:
    what to do instead), else None."""
    if fd not in _closed:
        return None
    return f"{_NAMES[fd]} is closed: {advice}"
