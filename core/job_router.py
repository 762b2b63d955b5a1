"""A worker process's jobs, each handed to the worker thread the main process chose for it.

The main process models every child's worker threads as it models its own (``core/dispatch.py``:
which hosts each thread's Session holds a connection to, which threads are free) and names in
each ``Job`` the thread that is to run it: a free one already connected to the job's host. So a
list over many hosts keeps a host's connections on a few threads, as in one process, instead of
every thread of every child meeting every host (each Session's pool holds ``--pool-size`` hosts,
and a thread meeting more reconnects, with a full TLS handshake, for most requests).

No dispatcher thread sits between the pipe and the workers (it would cost a thread hand-off per
attempt): a free worker with nothing in its inbox becomes the *reader*. It reads one batch from
the pipe, puts each job in the inbox of the worker it names, wakes those workers, and hands the
reader's part to another free worker if it found a job of its own. A job naming no worker
(``-1``: every thread of this child is connected to its host alone) goes to whichever free
worker asks first: the reader itself if it has nothing to do, so no thread is woken. A job
naming a worker that is still busy (its answer reached the main process before it asked for
more) waits for it: handing it to another would cost a connection, and the main process's
picture of which thread holds which host would drift. At most one thread reads at a time; the
others wait on their own condition, so a batch wakes only the workers it has jobs for.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Sequence

from poolfetch.core.frames import Job, Message

#: A read of the pipe: every message available (at least one), or None at its end.
ReadBatch = Callable[[], Sequence[Message] | None]
#: ``Job.worker`` of a job any free worker may run.
ANY_WORKER = -1


class JobRouter:
    """The jobs of ``workers`` threads, read from one pipe by whichever of them is free."""

    def __init__(self, read_batch: ReadBatch, workers: int) -> None:
        if workers < 1:
            raise ValueError("workers must be at least 1")
        self._read_batch = read_batch
        self._lock = threading.Lock()
        self._wake = [threading.Condition(self._lock) for _ in range(workers)]
        self._inboxes: list[deque[Job]] = [deque() for _ in range(workers)]
        self._anyone: deque[Job] = deque()
        #: Workers waiting on their condition, the most recent last.
        self._waiting: list[int] = []
        self._reading = False
        self._ended = False

    def next(self, worker: int) -> Job | None:
        """The next job of ``worker``, waiting for it; None once the pipe has ended or said
        ``stop`` (every waiting worker gets None then)."""
        while True:
            with self._lock:
                job = self._take(worker)
                if job is not None or self._ended:
                    return job
                if self._reading:
                    self._waiting.append(worker)
                    self._wake[worker].wait()
                    continue
                self._reading = True
            try:
                batch = self._read_batch()
            except BaseException:
                self._end()
                raise
            self._route(worker, batch)

    def _take(self, worker: int) -> Job | None:
        inbox = self._inboxes[worker]
        if inbox:
            return inbox.popleft()
        if self._anyone:
            return self._anyone.popleft()
        return None

    def _route(self, reader: int, batch: Sequence[Message] | None) -> None:
        """The reader's batch into the inboxes; wake whoever it concerns."""
        with self._lock:
            self._reading = False
            if batch is None:
                self._end_locked()
                return
            woken: set[int] = {reader}
            for message in batch:
                if not isinstance(message, Job):  # stop (or anything else): the end
                    self._end_locked()
                    return
                target = message.worker
                if 0 <= target < len(self._inboxes):
                    self._inboxes[target].append(message)
                    if target not in woken:
                        woken.add(target)
                        self._notify(target)
                else:
                    self._anyone.append(message)
                    self._notify_one(woken)
            if self._inboxes[reader] or self._anyone:
                self._notify_one(woken)  # the reader has work: someone else reads next

    def _notify(self, worker: int) -> None:
        if worker in self._waiting:
            self._waiting.remove(worker)
            self._wake[worker].notify()

    def _notify_one(self, woken: set[int]) -> None:
        """Wake one waiting worker not woken yet (it takes a job for anyone, or reads)."""
        for index in reversed(self._waiting):
            if index not in woken:
                woken.add(index)
                self._notify(index)
                return

    def _end(self) -> None:
        with self._lock:
            self._reading = False
            self._end_locked()

    def _end_locked(self) -> None:
        self._ended = True
        for index in self._waiting:
            self._wake[index].notify()
        self._waiting.clear()
