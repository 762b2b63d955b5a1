"""``ProcessWorkers``' policies: how workers are split, which process gets a job."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from poolfetch.core import procpool
from poolfetch.core.config import FetchConfig
from poolfetch.core.errors import WorkerProcessError
from poolfetch.core.frames import FrameReader
from poolfetch.core.models import FetchJob
from poolfetch.core.procpool import share_workers
from poolfetch.core.scheduler import PendingJob


@pytest.mark.parametrize(
    ("workers", "processes", "shares"),
    [(10, 1, [10]), (10, 2, [5, 5]), (9, 2, [5, 4]), (3, 8, [1, 1, 1]), (1, 4, [1])],
)
def test_workers_are_shared_evenly(workers: int, processes: int, shares: list[int]) -> None:
    assert share_workers(workers, processes) == shares


def test_jobs_prefer_the_process_warm_for_their_host_and_fail_when_none_is_left() -> None:

    from poolfetch.core.scheduler import PendingJob

    pool = procpool.ProcessWorkers(
        FetchConfig(workers=4, processes=2), "1", deliver=lambda p, a: None, lost=lambda p: None
    )
    first, second = (
        procpool._ChildProc(i, SimpleNamespace(pid=100 + i), 2, FrameReader(-1))  # type: ignore[arg-type]
        for i in range(2)
    )
    pool._children = [first, second]

    def job(host: str) -> PendingJob:
        return PendingJob(FetchJob(seq=1, url=f"http://{host}/", host=host))

    pool.submit(job("a:80"))
    warm = first if first.pending else second
    pool.submit(job("a:80"))
    assert len(warm.pending) == 2  # the same process while it has a free worker
    pool.submit(job("a:80"))
    other = second if warm is first else first
    assert len(other.pending) == 1  # then the least busy one
    first.alive = second.alive = False
    with pytest.raises(WorkerProcessError):
        pool.submit(job("b:80"))


def test_the_main_process_takes_a_cpu_and_the_children_start_at_the_next(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(procpool.os, "sched_getaffinity", lambda pid: {4, 2, 6}, raising=False)
    monkeypatch.setattr(procpool.os, "sched_setaffinity", lambda pid, cpus: None, raising=False)
    assert procpool._placement(4, pin=True) == (2, [4, 6, 2, 4])
    assert procpool._placement(2, pin=False) == (None, [None, None])
    monkeypatch.setattr(procpool.os, "sched_getaffinity", lambda pid: {3}, raising=False)
    assert procpool._placement(2, pin=True) == (None, [None, None])
