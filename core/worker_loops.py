"""Worker loops with one inbox each, so the main thread decides which worker runs a job.

A ``ThreadPoolExecutor``'s shared queue lets whichever thread is free take the next job, so
every worker meets every host. Here each of the executor's threads runs one loop for the whole
run, reading its own inbox: the main thread puts a job in the inbox of the worker it chose
(``core/dispatch.py``). The executor, its initializer and the warm-up stay as they were (every
thread has built its Session before the first request); ``start`` then gives each of the
executor's idle threads one loop, and ``stop`` ends them (the executor joins its threads when
the interpreter exits, so every started loop must be stopped).
"""

from __future__ import annotations

import queue
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

    def start(self, executor: Executor) -> None:
        """Submit one loop per worker: with as many idle threads as loops, each thread takes
        one and keeps it until ``stop`` (items sent before a loop runs wait in its inbox)."""
        self._futures = [executor.submit(self._loop, index) for index in range(len(self._inboxes))]

    def send(self, worker: int, item: T) -> None:
        self._inboxes[worker].put(item)

    def stop(self) -> None:
        """Each loop ends after the items already sent to it (``None`` is the stop mark)."""
        for inbox in self._inboxes:
            inbox.put(None)

    def _loop(self, index: int) -> None:
        inbox = self._inboxes[index]
        handle = self._handle
        while True:
            item = inbox.get()
            if item is None:
                return
            handle(index, item)
