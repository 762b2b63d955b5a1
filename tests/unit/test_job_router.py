"""``JobRouter``: a child's jobs reach the thread they name, whoever reads the pipe."""

from __future__ import annotations

import queue
import threading
from collections.abc import Sequence

from poolfetch.core.frames import STOP, Job, Message
from poolfetch.core.job_router import ANY_WORKER, JobRouter
from poolfetch.core.models import FetchJob

_TIMEOUT_S = 10.0


def _job(number: int, worker: int) -> Job:
    return Job(number, FetchJob(seq=number, url=f"http://h{number}/", host=f"h{number}:80"), worker)


class _Pipe:
    """Batches handed to whichever thread reads, one per ``read``; records who read."""

    def __init__(self) -> None:
        self.batches: queue.SimpleQueue[Sequence[Message] | None] = queue.SimpleQueue()
        self.readers: list[str] = []

    def read(self) -> Sequence[Message] | None:
        self.readers.append(threading.current_thread().name)
        return self.batches.get(timeout=_TIMEOUT_S)


def _workers(router: JobRouter, count: int) -> tuple[list[threading.Thread], queue.SimpleQueue]:
    """``count`` threads taking jobs until the end; each (worker, job id) goes on the queue."""
    taken: queue.SimpleQueue[tuple[int, int]] = queue.SimpleQueue()

    def loop(index: int) -> None:
        while (job := router.next(index)) is not None:
            taken.put((index, job.id))

    threads = [
        threading.Thread(target=loop, args=(i,), name=f"w{i}", daemon=True) for i in range(count)
    ]
    for thread in threads:
        thread.start()
    return threads, taken


def test_a_job_goes_to_the_worker_it_names_and_one_naming_none_to_whoever_asks() -> None:
    router = JobRouter(lambda: None, 4)
    router._waiting = [1, 2]  # 0 reads, 1 and 2 wait, 3 is busy
    router._route(0, [_job(1, 2), _job(2, 0), _job(3, 3), _job(4, ANY_WORKER)])
    assert router.next(2) == _job(1, 2)  # its own, without reading
    assert router.next(0) == _job(2, 0)
    assert router._waiting == []  # 1 was woken for the job naming nobody
    assert router.next(1) == _job(4, ANY_WORKER)
    assert router.next(3) == _job(3, 3)  # busy 3's job waited for it


def test_every_job_is_taken_once_one_thread_reads_at_a_time_and_stop_ends_them_all() -> None:
    pipe = _Pipe()
    router = JobRouter(pipe.read, 3)
    threads, taken = _workers(router, 3)
    pipe.batches.put([_job(1, 2), _job(2, 0), _job(3, 2)])
    pipe.batches.put([_job(4, 1), _job(5, ANY_WORKER)])
    pipe.batches.put([STOP])
    for thread in threads:
        thread.join(_TIMEOUT_S)
        assert not thread.is_alive()
    assert sorted(job for _, job in (taken.get_nowait() for _ in range(5))) == [1, 2, 3, 4, 5]
    assert taken.empty()
    assert len(pipe.readers) == 3  # one read per batch: never two threads at the pipe


def test_the_end_of_the_pipe_ends_every_worker() -> None:
    pipe = _Pipe()
    router = JobRouter(pipe.read, 2)
    threads, taken = _workers(router, 2)
    pipe.batches.put([_job(7, ANY_WORKER)])
    pipe.batches.put(None)
    for thread in threads:
        thread.join(_TIMEOUT_S)
        assert not thread.is_alive()
    assert taken.get_nowait()[1] == 7 and taken.empty()
