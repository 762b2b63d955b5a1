"""How a worker process of ``--processes`` starts: forked at the start of a run, else spawned.

A spawned child (``python -m poolfetch.core.procchild``) imports requests, urllib3 and poolfetch
again before its first request: measured here 0.3-0.4 s of CPU per child on a quiet machine
(more where no ``.pyc`` files are written), which is the whole start-up cost of ``--processes``
and a visible share of a short run. A child forked from the main process has all of that
already. The main process forks its children in ``ProcessWorkers.start``, before the run
begins, when the only other thread is at most the background line count (which holds no lock
a child uses); the forked child closes every inherited descriptor except its two pipes and
runs the same ``procchild.main`` as a spawned one. A replacement for a child that died mid-run
is spawned instead: by then the main process runs many threads, and a fork could copy a lock
one of them holds.

Both kinds look the same to the pool: ``pid``, ``stdin`` (jobs), ``stdout`` (answers),
``wait``, ``kill`` and ``returncode``, the part of ``subprocess.Popen`` it uses.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import warnings
from typing import IO, Protocol

from poolfetch.core.exit_codes import ExitCode

#: How often ``wait`` with a timeout looks at a forked child.
_POLL_S = 0.01


class ChildProcess(Protocol):
    """What the pool needs of a child process."""

    @property
    def pid(self) -> int: ...

    @property
    def returncode(self) -> int | None: ...

    @property
    def stdin(self) -> IO[bytes] | None: ...

    @property
    def stdout(self) -> IO[bytes] | None: ...

    def wait(self, timeout: float | None = None) -> int: ...

    def kill(self) -> None: ...


class ForkedChild:
    """A child forked from this process, with a pipe each way."""

    def __init__(self, pid: int, jobs: int, answers: int) -> None:
        self.pid = pid
        self.returncode: int | None = None
        self.stdin: IO[bytes] | None = os.fdopen(jobs, "wb")
        self.stdout: IO[bytes] | None = os.fdopen(answers, "rb")

    def wait(self, timeout: float | None = None) -> int:
        """Its exit status (negative: the signal that ended it), waiting up to ``timeout``;
        raises ``subprocess.TimeoutExpired`` after that."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.returncode is None:
            flags = 0 if deadline is None else os.WNOHANG
            try:
                pid, status = os.waitpid(self.pid, flags)
            except ChildProcessError:  # reaped elsewhere: its status is lost
                self.returncode = -1
                break
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
                break
            if deadline is not None and time.monotonic() >= deadline:
                raise subprocess.TimeoutExpired(f"worker process {self.pid}", timeout or 0.0)
            time.sleep(_POLL_S)
        return self.returncode

    def kill(self) -> None:
        if self.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)


def can_fork() -> bool:
    return hasattr(os, "fork")


def fork_child() -> ForkedChild:
    """Fork a worker process; raises ``OSError`` if the system refuses."""
    jobs_read, jobs_write = os.pipe()
    answers_read, answers_write = os.pipe()
    try:
        with warnings.catch_warnings():
            # Python 3.12+ warns about forking with threads; the only one here holds no lock a
            # child needs (see the module's docstring)
            warnings.simplefilter("ignore", DeprecationWarning)
            pid = os.fork()
    except OSError:
        for fd in (jobs_read, jobs_write, answers_read, answers_write):
            os.close(fd)
        raise
    if pid == 0:  # the child: never returns
        _become_worker(jobs_read, answers_write)
    os.close(jobs_read)
    os.close(answers_write)
    return ForkedChild(pid, jobs_write, answers_read)


def spawn_child() -> subprocess.Popen[bytes]:
    """Start a worker process from scratch; raises ``OSError`` if it cannot."""
    return subprocess.Popen(
        [sys.executable, "-m", "poolfetch.core.procchild"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        start_new_session=True,  # a terminal's Ctrl-C reaches only the main process
        close_fds=True,
    )


def _become_worker(jobs: int, answers: int) -> None:
    """In a forked child: the pipes as standard input and output, nothing else inherited but
    standard error, the main process's signal handlers undone; then the worker's main."""
    status = ExitCode.NO_PROCESSES
    try:
        os.setsid()  # as a spawned child: a terminal's Ctrl-C reaches only the main process
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        with contextlib.suppress(ValueError, OSError):
            signal.set_wakeup_fd(-1)
        os.dup2(jobs, 0)
        os.dup2(answers, 1)
        os.closerange(3, _max_fd())  # the main's files and the other children's pipes
        from poolfetch.core import procchild

        procchild.main()  # exits itself
    except BaseException:  # nothing of the main process's may run in the child
        status = ExitCode.NO_PROCESSES
    finally:
        os._exit(status)


def _max_fd() -> int:
    with contextlib.suppress(OSError, ValueError):
        return int(os.sysconf("SC_OPEN_MAX"))
    return 65536
