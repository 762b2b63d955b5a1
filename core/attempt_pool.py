"""The engine of a process that only executes attempts: ``--processes`` children, Redis workers.

Such a process gets attempt frames (``core.frames.Job``) from whoever schedules them, runs each
on a thread-local, pre-warmed Session exactly as a single-process run does, and answers with a
``Done`` whose complete body is already renamed into place (``Attempt.saved_path``): the
scheduling process may be on another machine, and only the process that wrote a temporary file
can rename it. Where the frames come from and where the answers go (a pipe, a Redis stream) is
the caller's: it gives every worker thread one loop to run.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

from poolfetch.core.bandwidth import SharedLine
from poolfetch.core.config import FetchConfig
from poolfetch.core.errors import OutputError
from poolfetch.core.executors import run_attempt
from poolfetch.core.frames import Done, Job
from poolfetch.core.partials import TempBodies
from poolfetch.core.sessions import SessionFactory
from poolfetch.core.sinks import BodyStore
from poolfetch.core.transport import Attempt, Transport

_WARMUP_TIMEOUT_S = 30.0


class AttemptPool:
    """``workers`` threads, each with its own Session, running attempt frames."""

    def __init__(
        self, config: FetchConfig, version: str, workers: int, bandwidth_line: str | None = None
    ) -> None:
        """``bandwidth_line``: the ``--limit-rate`` line shared with the other processes of the
        run (``SharedLine``'s path), if any."""
        self._abandon = threading.Event()
        self._store = BodyStore(config.output_dir) if config.output_dir is not None else None
        self._sessions = SessionFactory(config, version)
        bodies = TempBodies(self._store) if self._store is not None else None
        self._line = SharedLine(bandwidth_line) if bandwidth_line is not None else None
        self._transport = Transport(
            config, self._sessions, bodies, self._abandon, time.monotonic, self._line
        )
        self.workers = workers
        self._executor: ThreadPoolExecutor | None = None

    @property
    def sessions_built(self) -> int:
        return self._sessions.sessions_built

    def start(self, loop: Callable[[int], None]) -> None:
        """Start every worker thread (each builds its Session first) and return once all are
        warm; then each runs ``loop(index)`` once, for the whole run (``index``: 0, 1, ...)."""
        barrier = threading.Barrier(self.workers + 1)

        def warm_then_loop(index: int) -> None:
            barrier.wait(_WARMUP_TIMEOUT_S)
            loop(index)

        self._executor = ThreadPoolExecutor(
            max_workers=self.workers,
            thread_name_prefix="poolfetch-worker",
            initializer=self._sessions.init_worker,
        )
        for index in range(self.workers):
            self._executor.submit(warm_then_loop, index)
        barrier.wait(_WARMUP_TIMEOUT_S)

    def execute(self, message: Job) -> Done:
        """One attempt, its body saved under its final name if complete; never raises."""
        attempt = run_attempt(self._transport, message.job, time.monotonic)
        if attempt.pending is not None and self._store is not None:
            try:
                path = self._store.commit(attempt.pending)
                attempt = replace(attempt, pending=None, saved_path=path)
            except OutputError as exc:
                attempt = Attempt(replace(attempt.outcome, error=exc), None)
        return Done(message.id, attempt)

    def close(self) -> None:
        """Abandon bodies still being read and remove their temporary files."""
        self._abandon.set()
        if self._store is not None:
            self._store.close()
