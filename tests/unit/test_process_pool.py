"""``ProcessWorkers``' policies: how workers are split, which process gets a job."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from poolfetch.core import proc_placement, procpool
from poolfetch.core.config import FetchConfig
from poolfetch.core.errors import WorkerProcessError
from poolfetch.core.frames import FrameReader
from poolfetch.core.models import FetchJob
from poolfetch.core.proc_placement import share_workers, split_workers
from poolfetch.core.scheduler import PendingJob
from poolfetch.core.sessions import SessionFactory


@pytest.mark.parametrize(
    ("workers", "processes", "shares"),
    [(10, 1, [10]), (10, 2, [5, 5]), (9, 2, [5, 4]), (3, 8, [1, 1, 1]), (1, 4, [1])],
)
def test_workers_are_shared_evenly(workers: int, processes: int, shares: list[int]) -> None:
    assert share_workers(workers, processes) == shares


@pytest.mark.parametrize(
    ("workers", "processes", "split"),
    [(20, 2, (1, [19])), (4, 2, (1, [3])), (20, 4, (1, [7, 6, 6])), (3, 8, (1, [1, 1])),
     (1, 2, (1, [])), (10, 1, (10, []))],
)  # fmt: skip
def test_the_main_process_keeps_one_thread_and_the_children_share_the_rest(
    workers: int, processes: int, split: tuple[int, list[int]]
) -> None:
    assert split_workers(workers, processes) == split


def test_the_main_process_runs_a_job_only_when_every_child_thread_is_busy() -> None:
    config = FetchConfig(workers=8, processes=2)  # the main process 1 thread, the child 7
    pool = procpool.ProcessWorkers(
        config,
        "1",
        deliver=lambda p, a: None,
        lost=lambda p: None,
        local=(SessionFactory(config, "1"), lambda worker, pending: None),
    )
    child = procpool._ChildProc(0, SimpleNamespace(pid=100), 7, FrameReader(-1), 0)  # type: ignore[arg-type]
    pool._children, pool._places = [child], {0: child}
    assert (pool.capacity, pool.processes) == (8, 2)
    local = pool._local
    assert local is not None
    inbox = local._loops._inboxes[0]
    try:
        for _ in range(7):
            pool.submit(_job("a:80"))
        assert len(child.pending) == 7 and inbox.empty()
        pool.submit(_job("a:80"))  # every child thread busy: this process's own thread
        assert len(child.pending) == 7 and inbox.qsize() == 1
        pool.submit(_job("a:80"))  # nobody free: the least loaded, a child's
        assert len(child.pending) == 8 and inbox.qsize() == 1
        pool.answered(0)  # this process's thread answered: it is free again
        pool.answered(-1)  # a child's answer (its reader keeps that count): nothing
        pool.submit(_job("a:80"))
        assert inbox.qsize() == 2
        child.alive = False  # the child died and was not replaced: this process goes on
        for thread in child.threads:
            pool._threads.retire(thread)
        pool.answered(0)
        pool.submit(_job("b:80"))
        assert inbox.qsize() == 3 and len(child.pending) == 8
    finally:
        local.close()


def _two_children(workers: int = 4) -> procpool.ProcessWorkers:
    pool = procpool.ProcessWorkers(
        FetchConfig(workers=workers, processes=2),
        "1",
        deliver=lambda p, a: None,
        lost=lambda p: None,
    )
    children = [
        procpool._ChildProc(i, SimpleNamespace(pid=100 + i), 2, FrameReader(-1), 2 * i)  # type: ignore[arg-type]
        for i in range(2)
    ]
    pool._children = list(children)
    pool._places = dict(enumerate(children))
    return pool


def _job(host: str) -> PendingJob:
    return PendingJob(FetchJob(seq=1, url=f"http://{host}/", host=host))


def _sent(pool: procpool.ProcessWorkers) -> list[tuple[int, int, str]]:
    """(child, thread in the child, host) of every job submitted, in order; clears them."""
    sent = []
    for child in pool._children:
        reader = FrameReader(-1)
        reader._buffer += b"".join(child.outgoing)
        child.outgoing.clear()
        sent += [(child.index, m.worker, m.job.host) for m in reader._parse()]  # type: ignore[union-attr]
    return sent


def test_a_hosts_jobs_go_to_the_thread_of_any_child_that_holds_its_connection() -> None:
    pool = _two_children()
    for host in ("a:80", "b:80", "c:80", "d:80"):  # four threads, one host each
        pool.submit(_job(host))
    first = {host: (child, thread) for child, thread, host in _sent(pool)}
    assert sorted(first.values()) == [(0, 0), (0, 1), (1, 0), (1, 1)]
    for child in pool._children:  # every job answered: all four threads free again
        for _, thread in child.pending.values():
            pool._threads.release(thread)
        child.pending.clear()
    assert "c:80" in pool.idle_hosts and "e:80" not in pool.idle_hosts
    for host in ("d:80", "b:80", "c:80", "a:80"):
        pool.submit(_job(host))
    again = {host: (child, thread) for child, thread, host in _sent(pool)}
    assert again == first  # each host back on the thread (and process) connected to it


def test_a_dead_childs_threads_get_no_jobs_and_none_left_is_an_error() -> None:
    pool = _two_children()
    first, second = pool._children
    first.alive = False
    for thread in first.threads:
        pool._threads.retire(thread)
    for host in ("a:80", "b:80", "c:80"):  # more jobs than the live child has threads
        pool.submit(_job(host))
    assert {child for child, _, _ in _sent(pool)} == {1}
    second.alive = False
    with pytest.raises(WorkerProcessError):
        pool.submit(_job("b:80"))


def test_the_main_process_takes_a_cpu_and_the_children_start_at_the_next(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(
        proc_placement.os, "sched_getaffinity", lambda pid: {4, 2, 6}, raising=False
    )
    monkeypatch.setattr(
        proc_placement.os, "sched_setaffinity", lambda pid, cpus: None, raising=False
    )
    assert proc_placement.placement(4, pin=True) == (2, [4, 6, 2, 4])
    assert proc_placement.placement(2, pin=False) == (None, [None, None])
    monkeypatch.setattr(proc_placement.os, "sched_getaffinity", lambda pid: {3}, raising=False)
    assert proc_placement.placement(2, pin=True) == (None, [None, None])
