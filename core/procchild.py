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
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import BinaryIO

from poolfetch.core.errors import OutputError
from poolfetch.core.executors import run_attempt
from poolfetch.core.exit_codes import ExitCode
from poolfetch.core.frames import STOP, Done, FrameReader, FrameWriter, Job, Ready, Setup, frame
from poolfetch.core.partials import TempBodies
from poolfetch.core.sinks import BodyStore
from poolfetch.core.transport import Attempt, SessionFactory, Transport

_WARMUP_TIMEOUT_S = 30.0


class _Child:
    """One worker process's engine: its worker threads, transport and body store.

    The thread pool runs one long task per worker: each takes its next job from the pipe itself
    (one read takes a whole batch, which the others then take from memory) and writes its own
    answer (answers finished during a write go out together with the next). No dispatcher or
    writer thread sits between the pipe and the workers, so an attempt costs no more thread
    hand-offs here than in a single-process run.
    """

    def __init__(self, setup: Setup, jobs: FrameReader, out: BinaryIO) -> None:
        config = setup.config
        self._abandon = threading.Event()
        self._store = BodyStore(config.output_dir) if config.output_dir is not None else None
        self._sessions = SessionFactory(config, setup.version)
        bodies = TempBodies(self._store) if self._store is not None else None
        self._transport = Transport(config, self._sessions, bodies, self._abandon, time.monotonic)
        self._workers = setup.workers
        self._jobs = jobs
        self._out = FrameWriter(out)
        self._read_lock = threading.Lock()
        self._done = threading.Event()

    def run(self) -> None:
        """Build every Session, say so, then work until ``stop`` or the end of input."""
        barrier = threading.Barrier(self._workers + 1)
        executor = ThreadPoolExecutor(
            max_workers=self._workers,
            thread_name_prefix="poolfetch-worker",
            initializer=self._sessions.init_worker,
        )
        for _ in range(self._workers):
            executor.submit(self._worker, barrier)
        barrier.wait(_WARMUP_TIMEOUT_S)
        self._answer(frame(Ready(self._sessions.sessions_built)))
        self._done.wait()

    def close(self) -> None:
        self._abandon.set()
        if self._store is not None:
            self._store.close()

    def _worker(self, barrier: threading.Barrier) -> None:
        """One worker thread for the whole run (its Session built by the initializer)."""
        barrier.wait(_WARMUP_TIMEOUT_S)
        while not self._done.is_set():
            with self._read_lock:
                message = self._jobs.next()
            if isinstance(message, Job):
                self._answer(frame(Done(message.id, self._attempt(message))))
            elif message is None or message == STOP:
                self._done.set()

    def _attempt(self, message: Job) -> Attempt:
        """One attempt, its body saved under its final name if complete; never raises."""
        attempt = run_attempt(self._transport, message.job, time.monotonic)
        if attempt.pending is not None and self._store is not None:
            try:
                path = self._store.commit(attempt.pending)
                attempt = replace(attempt, pending=None, saved_path=path)
            except OutputError as exc:
                attempt = Attempt(replace(attempt.outcome, error=exc), None)
        return attempt

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
