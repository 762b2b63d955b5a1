"""Worker loops with one inbox each, so the main thread decides which worker runs a job.

A ``ThreadPoolExecutor``'s shared queue lets whichever thread is free take the next job, so
every worker meets every host. Here each of the executor's threads runs one loop for the whole
run, reading its own inbox: the main thread puts a job in the inbox of the worker it chose
(``core/dispatch.py``). The executor and its initializer stay as they were (each thread builds
its Session before its first job); ``start`` returns once every loop runs on its own thread,
which is also the warm-up (every Session built before the first request).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import Generic, TypeVar

T = TypeVar("T")


class WorkerLoops(Generic[T]):
    """``workers`` loops, each calling ``handle(worker, item)`` for the items sent to it."""

    def __init__(self, workers: int, handle: Callable[[int, T], None]) -> None:
        self._handle = handle
        self._inboxes: list[queue.SimpleQueue[T | None]] = [
            queue.SimpleQueue() for _ in range(workers)
        ]
        self._futures: list[Future[None]] = []

    def start(self, executor: Executor, timeout: float) -> None:
        """Start one loop per worker; return when all run (each on its own thread)."""
        barrier = threading.Barrier(len(self._inboxes) + 1)
        self._futures = [
            executor.submit(self._loop, index, barrier, timeout)
            for index in range(len(self._inboxes))
        ]
        barrier.wait(timeout)

    def send(self, worker: int, item: T) -> None:
        self._inboxes[worker].put(item)

    def stop(self) -> None:
        """Each loop ends after the items already sent to it (``None`` is the stop mark)."""
        for inbox in self._inboxes:
            inbox.put(None)

    def _loop(self, index: int, barrier: threading.Barrier, timeout: float) -> None:
        barrier.wait(timeout)
        inbox = self._inboxes[index]
        handle = self._handle
        while True:
            item = inbox.get()
            if item is None:
                return
            handle(index, item)
