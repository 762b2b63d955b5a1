"""Standard streams closed at start (``<&-``, ``>&-``, ``2>&-``, some daemons and schedulers).

Python leaves ``sys.stdin``/``sys.stdout``/``sys.stderr`` as ``None`` then, and the next file
the process opens (the state database, a body file, a socket) takes the free descriptor 0, 1
or 2. ``guard_standard_streams`` runs first thing: it puts ``/dev/null`` on every closed one,
so no file of the run can become "standard output", and gives Python a stream on it, so no
``None`` reaches the code. What was closed is remembered. Human output on a closed stderr is
discarded, as the user asked. The records and the URLs are never silently lost:
``run_problem`` turns a closed stream that a run needs (by ``-``, or by a path such as
``/dev/stdout``: ``closed_path``) into a usage error before any request.
"""

from __future__ import annotations

import contextlib
import os
import sys

import click

STDIN, STDOUT, STDERR = 0, 1, 2
_NAMES = {STDIN: "standard input", STDOUT: "standard output", STDERR: "standard error"}
_closed: set[int] = set()
_RESULTS_ADVICE = "give the records a file with --results FILE"


def guard_standard_streams() -> None:
    """Put ``/dev/null`` on each standard stream closed at start (see the module).

    Every closed descriptor is filled first, each inheritable (a worker process started later
    gets it too), and only then are Python's streams made, on those descriptors themselves: a
    stream on a new descriptor would take a number a forked worker reuses for its pipes."""
    streams = [
        (STDIN, "stdin", os.O_RDONLY),
        (STDOUT, "stdout", os.O_WRONLY),
        (STDERR, "stderr", os.O_WRONLY),
    ]
    for fd, name, flags in streams:
        if getattr(sys, name) is not None:
            continue
        _closed.add(fd)
        try:
            os.fstat(fd)  # taken already (by a file an import opened): leave it be
            continue
        except OSError:
            pass
        null = os.open(os.devnull, flags)
        if null != fd:
            os.dup2(null, fd)
            os.close(null)
        os.set_inheritable(fd, True)
    for fd, name, _ in streams:
        if fd in _closed:
            mode = "r" if fd == STDIN else "w"
            setattr(sys, name, open(fd, mode, encoding="utf-8", closefd=False))  # noqa: SIM115


def hint_if_typing(what: str) -> None:
    """Say on stderr that ``what`` is read from standard input, when a terminal is waiting
    for someone to type it (a pipe or a file needs no hint)."""
    with contextlib.suppress(ValueError, OSError):
        if sys.stdin.isatty():
            click.echo(f"poolfetch: reading {what} from standard input (Ctrl-D ends)", err=True)


def closed_problem(fd: int, advice: str) -> str | None:
    """A usage error's text if ``fd`` was closed at start and the run needs it (``advice``:
    what to do instead), else None."""
    if fd not in _closed:
        return None
    return f"{_NAMES[fd]} is closed: {advice}"


def closed_path(path: str) -> int | None:
    """The standard descriptor that ``path`` names (``/dev/stdout``, ``/dev/fd/1``,
    ``/proc/self/fd/1`` ...) if it was closed at start, else None: such a path now opens
    ``/dev/null``, and a run must not read or write it as if it were the stream."""
    named = {"/dev/stdin": STDIN, "/dev/stdout": STDOUT, "/dev/stderr": STDERR}
    for prefix in ("/dev/fd/", "/proc/self/fd/"):
        if path.startswith(prefix) and path[len(prefix) :].isdigit():
            named[path] = int(path[len(prefix) :])
    fd = named.get(os.path.normpath(path))
    return fd if fd in _closed else None


def run_problem(sources: list[str], results: str, summary_json: str | None) -> str | None:
    """A usage error's text if the run would read its URLs from, or write its records or
    summary to, a standard stream closed at start (by ``-`` or by a path naming it)."""
    records = STDOUT if results == "-" else closed_path(results)
    if records is not None and (problem := closed_problem(records, _RESULTS_ADVICE)):
        return problem
    summary = closed_path(summary_json) if summary_json is not None else None
    if summary is not None:
        return closed_problem(summary, "give --summary-json a file")
    for source in sources or ["-"]:
        fd = STDIN if source == "-" else closed_path(source)
        if fd is not None and (problem := closed_problem(fd, "give the URLs as a file")):
            return problem
    return None
