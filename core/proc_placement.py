"""Where ``--processes`` puts its workers and its processes: threads per process, CPU per process.

Pure arithmetic and two system calls, apart from ``procpool.py``'s child lifecycle, so the
choices are unit-tested on their own: how ``--workers`` are shared out (``split_workers``:
the main process keeps ``MAIN_WORKERS``, since it also decides every attempt of every
process), and which CPU each process is pinned to (``placement``).
"""

from __future__ import annotations

import os

#: Worker threads of the main process with ``--processes`` (``split_workers``).
MAIN_WORKERS = 1


def share_workers(workers: int, processes: int) -> list[int]:
    """``workers`` threads spread over at most ``processes`` processes, as evenly as possible."""
    processes = max(1, min(processes, workers))
    base, extra = divmod(workers, processes)
    return [base + (1 if i < extra else 0) for i in range(processes)]


def split_workers(workers: int, processes: int) -> tuple[int, list[int]]:
    """The main process's threads and each child's, for ``workers`` over ``processes``.

    The main process also decides every attempt of every process, and its own threads take the
    GIL from that work, so it keeps ``MAIN_WORKERS`` and the children share the rest. Its one
    thread, never waiting on a pipe, runs a large share of the attempts anyway (docs/design.md).
    """
    processes = max(1, min(processes, workers))
    if processes == 1:
        return workers, []
    return MAIN_WORKERS, share_workers(workers - MAIN_WORKERS, processes - 1)


def placement(count: int, pin: bool) -> tuple[int | None, list[int | None]]:
    """The CPU of the main process and of each child (None: not pinned).

    The main process runs several threads under one GIL (its loop, admission, its own workers,
    a reader per child): unpinned, every hand-off of the GIL may cross cores
    (``cli/affinity.py`` measured what that costs one process), so it takes the first CPU it
    may use. The children go round-robin over all of them starting at the next, so with one
    process per CPU each has a CPU of its own."""
    if not pin or not hasattr(os, "sched_getaffinity") or not hasattr(os, "sched_setaffinity"):
        return None, [None] * count
    allowed = sorted(os.sched_getaffinity(0))
    if len(allowed) <= 1:
        return None, [None] * count
    return allowed[0], [allowed[(i + 1) % len(allowed)] for i in range(count)]


def pin_self(cpu: int) -> set[int] | None:
    """Pin this process to ``cpu``; return the CPUs it had (None if it could not)."""
    try:
        before = os.sched_getaffinity(0)
        os.sched_setaffinity(0, {cpu})
    except OSError:
        return None
    return before
