"""Where attempts run: the seam between the runner's scheduling and the workers.

The runner decides which attempt starts when (limits, retries, pauses); an ``AttemptWorkers``
runs each one and hands the answer back to the runner's inbox. ``ThreadWorkers`` is the
in-process thread pool of thread-local Sessions (``LocalThreads``); ``ProcessWorkers``
(``core.procpool``) spreads the same pools over this process and child processes. The runner
holds never more attempts in flight than ``--workers``, so neither queues work of its own.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Container
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol

from poolfetch.core.bandwidth import SharedLine
from poolfetch.core.config import FetchConfig
from poolfetch.core.dispatch import WorkerPools
from poolfetch.core.models import AttemptOutcome, FetchJob
from poolfetch.core.scheduler import PendingJob
from poolfetch.core.sessions import SessionFactory
from poolfetch.core.transport import Attempt, Transport
from poolfetch.core.wire_errors import map_exception
from poolfetch.core.worker_loops import WorkerLoops

_WARMUP_TIMEOUT_S = 30.0

#: What this process's own worker threads need: the Session of each, and the attempt each runs.
LocalWork = tuple[SessionFactory, Callable[[int, PendingJob], None]]


def run_attempt(transport: Transport, job: FetchJob, clock: Callable[[], float]) -> Attempt:
    """One attempt on the calling worker's Session; whatever goes wrong, an answer."""
    try:
        return transport.send_once(job)
    except BaseException as exc:  # never lose a job to an unexpected error
        return Attempt(AttemptOutcome(started=clock(), elapsed=0.0, error=map_exception(exc)), None)


@dataclass(frozen=True, slots=True)
class Answers:
    """Where an ``AttemptWorkers`` hands back what happened: the runner's inbox.

    ``deliver(pending, attempt, worker)``: an attempt ended (``worker`` is what ``answered``
    is later called with; -1 when the executor keeps its own count). ``lost(pending)``: the
    attempt's worker died before answering; the runner runs it again. ``failed(error)``: the
    executor cannot go on (every child process dead, Redis gone); the runner stops, writes its
    summary and raises ``error``.
    """

    deliver: Callable[[PendingJob, Attempt, int], None]
    lost: Callable[[PendingJob], None]
    failed: Callable[[Exception], None]


#: Builds a run's workers once the runner knows where answers go.
WorkersFactory = Callable[[Answers], "AttemptWorkers"]


class AttemptWorkers(Protocol):
    """What the runner needs of its workers."""

    @property
    def capacity(self) -> int:
        """Attempts the workers can run at once now (the runner never has more in flight)."""
        ...

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

    @property
    def idle_hosts(self) -> Container[str]:
        """Hosts a free worker holds a connection to (the scheduler prefers their jobs)."""
        ...

    def submit(self, pending: PendingJob) -> None:
        """Run one attempt of ``pending``; its answer arrives in the runner's inbox."""
        ...

    def answered(self, worker: int) -> None:
        """Worker ``worker`` answered one attempt (its index as the answer carried it)."""
        ...

    def flush(self) -> None:
        """Start what was submitted since the last call (a batch of jobs per process)."""
        ...

    def close(self) -> None:
        """The run is over: stop the workers, abandoning what is still in flight."""
        ...


class LocalThreads:
    """Worker threads of this process, each with its own pre-warmed Session and its own inbox.

    After the warm-up each executor thread runs one loop (``core.worker_loops``): the caller
    names the thread that runs each job (``send``), so connections follow hosts. Used alone by
    ``ThreadWorkers`` and, next to the child processes, by ``ProcessWorkers``.
    """

    def __init__(
        self,
        workers: int,
        sessions: SessionFactory,
        work: Callable[[int, PendingJob], None],
    ) -> None:
        self.workers = workers
        self._sessions = sessions
        self._executor = ThreadPoolExecutor(
            max_workers=workers,
            thread_name_prefix="poolfetch-worker",
            initializer=sessions.init_worker,
        )
        self._loops: WorkerLoops[PendingJob] = WorkerLoops(workers, work)

    @property
    def sessions(self) -> int:
        return self._sessions.sessions_built

    def start(self) -> None:
        barrier = threading.Barrier(self.workers)
        futures = [
            self._executor.submit(barrier.wait, _WARMUP_TIMEOUT_S) for _ in range(self.workers)
        ]
        for future in futures:
            future.result()
        self._loops.start(self._executor)  # one loop per (warm, idle) worker thread

    def send(self, worker: int, pending: PendingJob) -> None:
        """Run ``pending`` on thread ``worker`` (it calls ``work(worker, pending)``)."""
        self._loops.send(worker, pending)

    def close(self) -> None:
        # every loop must end: the executor joins its threads when the interpreter exits
        self._loops.stop()
        self._executor.shutdown(wait=False, cancel_futures=True)


class ThreadWorkers:
    """The workers as threads of this process (``LocalThreads``); the main thread picks which
    one runs a job (``core.dispatch``): one already connected to the job's host."""

    def __init__(
        self,
        workers: int,
        pool_size: int,
        sessions: SessionFactory,
        work: Callable[[int, PendingJob], None],
    ) -> None:
        self._threads = LocalThreads(workers, sessions, work)
        self._pools = WorkerPools(workers, pool_size)

    @property
    def capacity(self) -> int:
        return self._threads.workers

    @property
    def sessions(self) -> int:
        return self._threads.sessions

    @property
    def processes(self) -> int:
        return 1

    @property
    def idle_hosts(self) -> Container[str]:
        return self._pools.idle_hosts

    def start(self) -> None:
        self._threads.start()

    def submit(self, pending: PendingJob) -> None:
        self._threads.send(self._pools.assign(pending.job.host), pending)

    def flush(self) -> None:
        return None  # a job sent to a loop starts at once

    def answered(self, worker: int) -> None:
        self._pools.release(worker)

    def close(self) -> None:
        self._threads.close()


def local_workers(
    config: FetchConfig,
    version: str,
    sessions: SessionFactory,
    work: Callable[[int, PendingJob], None],
    answers: Answers,
    line: SharedLine | None = None,
) -> AttemptWorkers:
    """This machine's workers for ``config``: threads of this process (``work`` runs each
    attempt), with ``--processes`` one of them and child processes for the rest (they answer
    through ``answers``; ``line``: the ``--limit-rate`` line all of them share)."""
    if config.processes > 1:
        from poolfetch.core.procpool import ProcessWorkers

        return ProcessWorkers(
            config,
            version,
            deliver=lambda pending, attempt: answers.deliver(pending, attempt, -1),
            lost=answers.lost,
            local=(sessions, work),
            line=line,
            pin=config.pin_processes,
        )
    return ThreadWorkers(config.workers, config.effective_pool_size, sessions, work)
