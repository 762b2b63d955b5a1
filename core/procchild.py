"""A worker process of ``--processes N``: the same thread pool of Sessions, in its own process.

Started by ``ProcessWorkers`` as ``python -m poolfetch.core.procchild`` with pipes on its
standard input (setup, jobs, stop) and output (ready, one answer per job). It builds one
thread-local Session per worker exactly as a single-process run does, pins itself to the CPU it
was given, and does only attempts: the main process schedules every one of them (so every limit
holds across processes), and writes every record, the state and the summary.

A body that arrives complete is renamed into place here (the attempt says where); on ``stop``,
or when the main process goes away (end of input), the temporary files of unfinished bodies are
removed and the process exits at once. Terminal signals are ignored: the main process decides.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from typing import BinaryIO

from poolfetch.core.attempt_pool import AttemptPool
from poolfetch.core.exit_codes import ExitCode
from poolfetch.core.frames import FrameReader, FrameWriter, Ready, Setup, WireError, frame
from poolfetch.core.job_router import JobRouter


class _Child:
    """One worker process: an ``AttemptPool`` between the two pipes.

    Each job names the worker thread the main process chose for it (one already connected to
    its host); the free threads take turns reading the pipe and hand each job to its thread
    (``core.job_router``), and each thread writes its own answer (answers finished during a
    write go out together with the next). No dispatcher or writer thread sits between the pipe
    and the workers, so an attempt costs no more thread hand-offs here than in a single-process
    run.
    """

    def __init__(self, setup: Setup, jobs: FrameReader, out: BinaryIO) -> None:
        self._pool = AttemptPool(setup.config, setup.version, setup.workers, setup.bandwidth_line)
        self._jobs = JobRouter(jobs.batch, setup.workers)
        self._out = FrameWriter(out)
        self._done = threading.Event()

    def run(self) -> None:
        """Build every Session, say so, then work until ``stop`` or the end of input."""
        self._pool.start(self._worker)
        self._answer(frame(Ready(self._pool.sessions_built)))
        self._done.wait()

    def close(self) -> None:
        self._pool.close()

    def _worker(self, index: int) -> None:
        """Worker thread ``index`` for the whole run (its Session built by the initializer)."""
        while not self._done.is_set():
            try:
                job = self._jobs.next(index)
            except (OSError, WireError):  # the main process went away, or out of step
                job = None
            if job is None:
                self._done.set()
                return
            self._answer(frame(self._pool.execute(job)))

    def _answer(self, data: bytes) -> None:
        try:
            self._out.send(data)
        except (OSError, ValueError):  # the main process went away
            self._done.set()


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    jobs = FrameReader(0)  # standard input: the jobs pipe
    # the answer pipe is ours alone: anything else printing to stdout goes to stderr
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    setup = jobs.next()
    if not isinstance(setup, Setup):
        os._exit(ExitCode.USAGE)  # not started by a ProcessWorkers: nothing to do
    if setup.cpu is not None and hasattr(os, "sched_setaffinity"):
        with contextlib.suppress(OSError):
            os.sched_setaffinity(0, {setup.cpu})
    child = _Child(setup, jobs, out)
    try:
        child.run()
    finally:
        child.close()
        os._exit(ExitCode.OK)


if __name__ == "__main__":
    main()
