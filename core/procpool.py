"""``--processes N``: the workers spread over the main process and N - 1 child processes.

The GIL lets one process use about one core; poolfetch's attempts are CPU-bound in Python
(requests, urllib3, http.client), so more cores need more processes. The main process keeps
everything that decides: admission, the scheduler and the limiter (so global and per-host
limits, host pauses and the learned limits hold across processes exactly as within one),
retries, records, state and statistics. It also runs one of the workers itself
(``proc_placement.split_workers``): an attempt run there crosses no pipe, and its CPU has room
between decisions. Each child (``core.procchild``) is a thread pool of thread-local Sessions
that only executes attempts; jobs go to it over a pipe and its answers come back on another
(``core.frames``), read by one thread per child that decodes them, a batch per read, and hands
them to the runner's inbox.

Connections follow hosts across the processes as they do across one process's threads: the
main process keeps ``core.dispatch``'s model of every thread (which hosts each one's Session
holds, which are free) and picks the thread that is to run each job: a free thread already
connected to the job's host, in whichever process has one, a child's before its own. A job for a
child names that thread (``core.job_router``), or none when all of the child's threads are
connected to that host alone, as on a one-host list. A child that dies (``kill -9``, a crash)
loses nothing: its unanswered attempts are handed back to the runner to run again elsewhere,
and a replacement is started (up to ``RESPAWNS_PER_PROCESS`` times per process); with no child
left the main process's own threads finish the run.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import subprocess
import threading
import time
from collections.abc import Callable, Container
from dataclasses import dataclass, field
from typing import IO

from poolfetch.core.bandwidth import SharedLine
from poolfetch.core.config import FetchConfig
from poolfetch.core.dispatch import WorkerPools
from poolfetch.core.errors import WorkerProcessError
from poolfetch.core.executors import LocalThreads, LocalWork
from poolfetch.core.frames import (
    STOP,
    Done,
    FrameReader,
    Job,
    Ready,
    Setup,
    WireError,
    frame,
)
from poolfetch.core.job_router import ANY_WORKER
from poolfetch.core.proc_placement import pin_self, placement, share_workers, split_workers
from poolfetch.core.procstart import ChildProcess, can_fork, fork_child, spawn_child
from poolfetch.core.scheduler import PendingJob
from poolfetch.core.sinks import sweep_temps
from poolfetch.core.transport import Attempt

log = logging.getLogger(__name__)

#: How often one process's place may be refilled after its child died.
RESPAWNS_PER_PROCESS = 3
_STOP_WAIT_S = 2.0


@dataclass(eq=False)
class _ChildProc:
    """One child process and the attempts it has not answered yet (guarded by the pool lock)."""

    index: int
    process: ChildProcess
    workers: int
    #: Its answers (read by its reader thread only, after ``Ready``).
    answers: FrameReader
    #: Where its threads start in the pool's numbering of all threads (``first + local``).
    first: int
    #: Its unanswered attempts and the thread (pool numbering) each was given.
    pending: dict[int, tuple[PendingJob, int]] = field(default_factory=dict)
    #: Frames submitted but not yet written (main thread only).
    outgoing: list[bytes] = field(default_factory=list)
    alive: bool = True
    sessions: int = 0

    @property
    def threads(self) -> range:
        """Its threads in the pool's numbering."""
        return range(self.first, self.first + self.workers)

    @property
    def stdin(self) -> IO[bytes]:
        assert self.process.stdin is not None
        return self.process.stdin


class _IdleHosts:
    """``host in idle_hosts``: a free thread of a live child holds a connection to ``host``."""

    __slots__ = ("_workers",)

    def __init__(self, workers: ProcessWorkers) -> None:
        self._workers = workers

    def __contains__(self, host: object) -> bool:
        workers = self._workers
        with workers._lock:
            return host in workers._threads.idle_hosts


class ProcessWorkers:
    """The child processes of one run. ``submit`` is called by the runner's main thread only."""

    def __init__(
        self,
        config: FetchConfig,
        version: str,
        *,
        deliver: Callable[[PendingJob, Attempt], None],
        lost: Callable[[PendingJob], None],
        local: LocalWork | None = None,
        line: SharedLine | None = None,
        pin: bool = True,
    ) -> None:
        self._config = config
        self._version = version
        self._deliver = deliver
        self._lost = lost
        self._lock = threading.Lock()
        self._children: list[_ChildProc] = []
        if local is not None:
            own, self._shares = split_workers(config.workers, config.processes)
        else:  # every thread in a child (the pool's unit tests)
            own, self._shares = 0, share_workers(config.workers, config.processes)
        #: This process's own threads, if any (they answer through ``local``'s work).
        self._local = LocalThreads(own, *local) if local is not None and own else None
        #: Every thread in one model, the children's child by child and then this process's
        #: (so a tie goes to a child, whose CPU does not also schedule): which hosts each
        #: thread's Session holds, which threads are free (guarded by the lock).
        self._threads = WorkerPools(sum(self._shares) + own, config.effective_pool_size)
        self._firsts = [sum(self._shares[:i]) for i in range(len(self._shares))]
        self._owners = [i for i, share in enumerate(self._shares) for _ in range(share)]
        #: Where this process's threads start in that numbering.
        self._local_first = sum(self._shares)
        #: The live child of each place (``_ChildProc.index``).
        self._places: dict[int, _ChildProc] = {}
        self._main_cpu, self._cpus = placement(len(self._shares), pin)
        #: This process's CPUs before it pinned itself (restored by ``close``).
        self._own_cpus: set[int] | None = None
        self._respawns = RESPAWNS_PER_PROCESS * len(self._shares)
        self._ids = itertools.count()
        #: ``--limit-rate``: the byte line of every process (the caller's, shared with this
        #: process's threads; else made by ``start`` for the children alone).
        self._line = line
        self._own_line = False
        #: Attempts handed to this process's threads and to the children (the ``-v`` log).
        self.ran_here = 0
        self.ran_in_children = 0
        self._closing = False
        self._deaths = 0
        self._readers: list[threading.Thread] = []

    @property
    def capacity(self) -> int:
        return self._threads.size

    @property
    def processes(self) -> int:
        return len(self._shares) + (1 if self._local is not None else 0)

    @property
    def sessions(self) -> int:
        own = self._local.sessions if self._local is not None else 0
        with self._lock:
            return own + sum(child.sessions for child in self._children)

    @property
    def idle_hosts(self) -> Container[str]:
        """The hosts a free thread of some child is connected to (the scheduler prefers their
        jobs)."""
        return _IdleHosts(self)

    def answered(self, worker: int) -> None:
        """This process's thread ``worker`` answered (a child's answers are counted by its
        reader, and arrive as worker -1)."""
        if worker >= 0:
            with self._lock:
                self._threads.release(self._local_first + worker)

    def start(self) -> None:
        """Start every child and this process's own workers, and wait until each has built its
        Sessions."""
        if self._main_cpu is not None:
            self._own_cpus = pin_self(self._main_cpu)
        if self._config.limit_rate is not None and self._line is None:  # one for the children
            self._line = SharedLine.create(time.monotonic())
            self._own_line = True
        started = [self._spawn(i, fork=can_fork()) for i in range(len(self._shares))]
        if self._local is not None:  # after the forks: a fork copies no worker thread's lock
            self._local.start()
        for child in started:
            self._await_ready(child)
            with self._lock:
                self._children.append(child)
                self._places[child.index] = child
            self._start_reader(child)

    def submit(self, pending: PendingJob) -> None:
        """Hand one attempt to a thread of this process (it starts at once) or of a child (sent
        at the next ``flush``); raises ``WorkerProcessError`` if no worker is left."""
        host = pending.job.host
        with self._lock:
            if self._local is None and not any(c.alive for c in self._children):
                raise WorkerProcessError("every worker process died and none could be restarted")
            thread = self._threads.assign(host)
            if thread >= self._local_first:
                child = None
                self.ran_here += 1
            else:
                self.ran_in_children += 1
                job_id = next(self._ids)
                child = self._places[self._owners[thread]]
                child.pending[job_id] = (pending, thread)
                # the child's threads all connected to this host alone: any free one will do,
                # and the one reading the pipe takes it without waking another
                anyone = self._threads.only_host_of_all(host, child.threads)
        if child is None:
            assert self._local is not None
            self._local.send(thread - self._local_first, pending)
            return
        worker = ANY_WORKER if anyone else thread - child.first
        child.outgoing.append(frame(Job(job_id, pending.job, worker)))

    def flush(self) -> None:
        """Send the jobs submitted since the last flush, one write per child."""
        for child in self._children:
            if not child.outgoing:
                continue
            data = b"".join(child.outgoing)
            child.outgoing.clear()
            try:
                child.stdin.write(data)
                child.stdin.flush()
            except (OSError, ValueError):
                pass  # it died: its reader hands what it held back to the runner as lost

    def close(self) -> None:
        """Stop every child (its temporary files removed) and wait for it, killing stragglers."""
        with self._lock:
            self._closing = True
            children = list(self._children)
        log.info(
            "attempts run: %d by the main process, %d by its worker processes (%d)",
            self.ran_here,
            self.ran_in_children,
            len(self._shares),
        )
        self._broadcast(STOP)
        for child in children:
            with contextlib.suppress(OSError):
                child.stdin.close()
            try:
                child.process.wait(_STOP_WAIT_S)
            except subprocess.TimeoutExpired:
                child.process.kill()
                child.process.wait(_STOP_WAIT_S)
        for reader in self._readers:
            reader.join(_STOP_WAIT_S)
        if self._local is not None:
            self._local.close()
        if self._own_cpus is not None:
            with contextlib.suppress(OSError):
                os.sched_setaffinity(0, self._own_cpus)
        if self._line is not None and self._own_line:
            self._line.close(remove=True)
            self._line = None
        if self._deaths and self._config.output_dir is not None:
            # a killed child could not remove its temporary files; no child is left to write one
            removed = sweep_temps(str(self._config.output_dir))
            if removed:
                log.info("removed %d temporary files of dead worker processes", removed)

    def pids(self) -> list[int]:
        """Process ids of the live children (for tests and the -v log)."""
        with self._lock:
            return [c.process.pid for c in self._children if c.alive]

    # -- internals ----------------------------------------------------------------------------

    def _spawn(self, index: int, *, fork: bool = False) -> _ChildProc:
        """Start child ``index``: forked at the start of the run, spawned to replace one
        (``core.procstart`` says why)."""
        try:
            process: ChildProcess = fork_child() if fork else spawn_child()
        except OSError as exc:
            raise WorkerProcessError(f"cannot start a worker process: {exc.strerror}") from exc
        assert process.stdout is not None
        answers = FrameReader(process.stdout.fileno())
        child = _ChildProc(index, process, self._shares[index], answers, self._firsts[index])
        line = self._line.path if self._line is not None else None
        setup = Setup(self._config, self._version, child.workers, self._cpus[index], line)
        try:
            child.stdin.write(frame(setup))
            child.stdin.flush()
        except OSError as exc:
            raise WorkerProcessError("a worker process exited at start-up") from exc
        return child

    def _await_ready(self, child: _ChildProc) -> None:
        try:
            ready = child.answers.next()
        except (OSError, WireError) as exc:
            raise WorkerProcessError(f"a worker process failed at start-up: {exc}") from exc
        if not isinstance(ready, Ready):
            child.process.kill()
            child.process.wait()
            raise WorkerProcessError(
                f"a worker process exited at start-up (status {child.process.returncode})"
            )
        child.sessions = ready.sessions

    def _start_reader(self, child: _ChildProc) -> None:
        reader = threading.Thread(
            target=self._read_answers,
            args=(child,),
            name=f"poolfetch-process-{child.index}",
            daemon=True,
        )
        self._readers.append(reader)
        reader.start()

    def _read_answers(self, child: _ChildProc) -> None:
        """Reader thread of one child: its answers to the runner; if it dies, its jobs too."""
        try:
            while (batch := child.answers.batch()) is not None:
                done = [message for message in batch if isinstance(message, Done)]
                with self._lock:
                    answered = []
                    for message in done:
                        entry = child.pending.pop(message.id, None)
                        if entry is not None:
                            self._threads.release(entry[1])
                            answered.append((entry[0], message.attempt))
                for pending, attempt in answered:
                    self._deliver(pending, attempt)
                if len(done) < len(batch):
                    break  # anything but an answer: the child is out of step
        except (OSError, WireError) as exc:
            log.warning("worker process %d: %s", child.process.pid, exc)
        self._child_gone(child)

    def _child_gone(self, child: _ChildProc) -> None:
        with self._lock:
            child.alive = False
            self._deaths += 1
            orphans = [pending for pending, _ in child.pending.values()]
            child.pending.clear()
            for thread in child.threads:
                self._threads.retire(thread)
            closing = self._closing
            replace = not closing and self._respawns > 0
            if replace:
                self._respawns -= 1
        if closing:
            return
        status = child.process.wait()
        log.warning(
            "worker process %d ended (status %s); %d unanswered attempts run again",
            child.process.pid,
            status,
            len(orphans),
        )
        if replace:
            self._replace(child)
        with self._lock:
            left = any(c.alive for c in self._children)
        if not left and self._local is not None:
            log.warning(
                "no worker process left: the run goes on in the main process's %d worker threads",
                self._local.workers,
            )
        for pending in orphans:
            self._lost(pending)

    def _replace(self, dead: _ChildProc) -> None:
        try:
            child = self._spawn(dead.index)
            self._await_ready(child)
        except WorkerProcessError as exc:
            log.warning("%s", exc)
            return
        with self._lock:
            if self._closing:
                child.process.kill()
                return
            self._children = [c for c in self._children if c is not dead]
            self._children.append(child)
            self._places[child.index] = child
            for thread in child.threads:
                self._threads.reset(thread)
        self._start_reader(child)

    def _broadcast(self, message: str) -> None:
        data = frame(message)
        with self._lock:
            children = [c for c in self._children if c.alive]
        for child in children:
            with contextlib.suppress(OSError, ValueError):
                child.stdin.write(data)
                child.stdin.flush()
