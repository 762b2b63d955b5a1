"""Where attempts run: the seam between the runner's scheduling and the workers.

The runner decides which attempt starts when (limits, retries, pauses); an ``AttemptWorkers``
runs each one and hands the answer back to the runner's inbox. ``ThreadWorkers`` is the
in-process thread pool of thread-local Sessions; ``ProcessWorkers`` (``core.procpool``) spreads
the same pools over child processes. The runner holds never more attempts in flight than
``--workers``, so neither queues work of its own.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

from poolfetch.core.scheduler import PendingJob
from poolfetch.core.transport import SessionFactory

_WARMUP_TIMEOUT_S = 30.0


class AttemptWorkers(Protocol):
    """What the runner needs of its workers."""

    @property
    def sessions(self) -> int:
        """Sessions built (one per worker thread), for the summary."""
        ...

    @property
    def processes(self) -> int:
        """Processes the workers run in (1: this one)."""
        ...

    def start(self) -> None:
        """Start every worker and build every Session before the first request."""
        ...

    def submit(self, pending: PendingJob) -> None:
        """Run one attempt of ``pending``; its answer arrives in the runner's inbox."""
        ...

    def flush(self) -> None:
        """Start what was submitted since the last call (a batch of jobs per process)."""
        ...

    def close(self) -> None:
        """The run is over: stop the workers, abandoning what is still in flight."""
        ...


class ThreadWorkers:
    """The workers as threads of this process, each with its own pre-warmed Session."""

    def __init__(
        self, workers: int, sessions: SessionFactory, work: Callable[[PendingJob], None]
    ) -> None:
        self._workers = workers
        self._sessions = sessions
        self._work = work
        self._executor = ThreadPoolExecutor(
            max_workers=workers,
            thread_name_prefix="poolfetch-worker",
            initializer=sessions.init_worker,
        )

    @property
    def sessions(self) -> int:
        return self._sessions.sessions_built

    @property
    def processes(self) -> int:
        return 1

    def start(self) -> None:
        barrier = threading.Barrier(self._workers)
        futures = [
            self._executor.submit(barrier.wait, _WARMUP_TIMEOUT_S) for _ in range(self._workers)
        ]
        for future in futures:
            future.result()

    def submit(self, pending: PendingJob) -> None:
        self._executor.submit(self._work, pending)

    def flush(self) -> None:
        return None  # submitted jobs start at once

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
