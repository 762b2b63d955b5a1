"""Host-affine dispatch: which worker runs a job (core/dispatch.py) and the scheduler's
preference for hosts a free worker is connected to (``Scheduler.next_ready(prefer=...)``).

The policy is stepped by hand on its own; a small simulation then runs scheduler and policy
together on a fake clock (workers finishing jobs in pseudo-random times) and counts the
connections workers would open, against the plain "any free worker" dispatch.
"""

from __future__ import annotations

import heapq
import random
import threading
from concurrent.futures import ThreadPoolExecutor
from itertools import count

import pytest
from urllib3 import PoolManager

from poolfetch.core.config import RateLimit
from poolfetch.core.dispatch import WorkerPools
from poolfetch.core.limiter import LocalLimiter
from poolfetch.core.models import FetchJob
from poolfetch.core.scheduler import AFFINITY_PASSES, PendingJob, Scheduler
from poolfetch.core.worker_loops import WorkerLoops

_seq = count()


def _job(host: str) -> PendingJob:
    return PendingJob(FetchJob(seq=next(_seq), url=f"https://{host}/", host=f"{host}:443"))


# -- the policy -------------------------------------------------------------------------------


def test_a_free_worker_connected_to_the_host_gets_its_job() -> None:
    pools = WorkerPools(workers=3, pool_size=4)
    assert pools.assign("a") == 0
    assert pools.assign("b") == 1
    pools.release(0)
    pools.release(1)
    assert pools.assign("b") == 1
    assert pools.assign("a") == 0


def test_a_host_spreads_to_another_worker_only_while_its_own_are_busy() -> None:
    pools = WorkerPools(workers=3, pool_size=4)
    first = pools.assign("a")
    second = pools.assign("a")  # never waits for the busy warm worker
    assert second != first
    pools.release(first)
    assert pools.assign("a") == first
    pools.release(second)
    assert pools.assign("a") == second
    assert pools.holders("a") == {first, second}


def test_a_worker_with_room_goes_before_one_that_would_drop_a_host() -> None:
    pools = WorkerPools(workers=2, pool_size=1)
    pools.release(pools.assign("a"))  # worker 0 now holds a, its one pool
    assert pools.assign("b") == 1
    assert pools.hosts_of(0) == ["a"]


def test_the_host_dropped_is_one_another_worker_also_holds() -> None:
    pools = WorkerPools(workers=3, pool_size=1)
    for host in ("a", "a", "b"):
        pools.assign(host)  # workers 0 and 1 hold a, worker 2 holds b
    for worker in range(3):
        pools.release(worker)
    chosen = pools.assign("c")
    assert chosen in (0, 1)  # a still has a connection elsewhere; b would have none
    assert pools.holders("b") == {2}
    assert pools.holders("a") == {0, 1} - {chosen}


def test_among_equal_losses_the_host_used_longest_ago_is_dropped() -> None:
    pools = WorkerPools(workers=2, pool_size=1)
    pools.assign("a")  # worker 0, used first
    pools.assign("b")  # worker 1
    pools.release(0)
    pools.release(1)
    assert pools.assign("c") == 0
    assert pools.holders("a") == frozenset()


def test_idle_hosts_are_those_a_free_worker_holds() -> None:
    pools = WorkerPools(workers=2, pool_size=4)
    worker = pools.assign("a")
    assert "a" not in pools.idle_hosts  # its only holder is busy
    pools.release(worker)
    assert "a" in pools.idle_hosts
    assert "z" not in pools.idle_hosts


def test_with_every_worker_busy_the_least_loaded_one_is_chosen() -> None:
    pools = WorkerPools(workers=2, pool_size=4)
    pools.assign("a")
    pools.assign("b")
    assert pools.idle_count == 0
    third = pools.assign("a")  # a reserved start beyond the workers: queued behind one job
    assert third == 0
    assert pools.assign("c") == 1


@pytest.mark.parametrize("pool_size", [1, 2, 3])
def test_the_model_keeps_the_hosts_urllib3_keeps(pool_size: int) -> None:
    """The same uses, the same hosts held as urllib3's PoolManager (an LRU of pools)."""
    rng = random.Random(pool_size)
    pools = WorkerPools(workers=1, pool_size=pool_size)
    manager = PoolManager(num_pools=pool_size)
    for _ in range(200):
        host = rng.choice("abcde")
        pools.release(pools.assign(host))
        manager.connection_from_host(host, port=443, scheme="https")
        held = manager.pools.keys()  # the container itself cannot be iterated
        assert {key.key_host for key in held} == set(pools.hosts_of(0))


# -- the scheduler's preference ---------------------------------------------------------------


def _scheduler(clock, **limits) -> tuple[LocalLimiter, Scheduler]:
    limiter = LocalLimiter(RateLimit(**limits), clock=clock)
    return limiter, Scheduler(limiter, clock=clock)


def test_a_preferred_host_goes_first_then_the_rotation_goes_on(clock) -> None:
    _, scheduler = _scheduler(clock)
    for host in ("a", "b", "c"):
        for _ in range(2):
            scheduler.add(_job(host))
    pending, _ = scheduler.next_ready({"c:443"})
    assert pending is not None and pending.job.host == "c:443"
    hosts = []
    while (pending := scheduler.next_ready()[0]) is not None:
        hosts.append(pending.job.host)
    assert hosts == ["a:443", "b:443", "c:443", "a:443", "b:443"]  # c went to the back


def test_the_front_host_is_passed_over_a_bounded_number_of_times(clock) -> None:
    _, scheduler = _scheduler(clock)
    scheduler.add(_job("a"))
    for _ in range(AFFINITY_PASSES + 5):
        scheduler.add(_job("b"))
    hosts = []
    for _ in range(AFFINITY_PASSES + 1):
        pending, _ = scheduler.next_ready({"b:443"})
        assert pending is not None
        hosts.append(pending.job.host)
    assert hosts == ["b:443"] * AFFINITY_PASSES + ["a:443"]


def test_a_preferred_host_that_may_not_start_does_not_hold_up_the_others(clock) -> None:
    limiter, scheduler = _scheduler(clock)
    limiter.pause_host("c:443", 10.0)
    for host in ("a", "b", "c"):
        scheduler.add(_job(host))
    pending, _ = scheduler.next_ready({"c:443"})
    assert pending is not None and pending.job.host == "a:443"


# -- both together ----------------------------------------------------------------------------


def _simulate(hosts: int, workers: int, urls: int, *, affine: bool) -> int:
    """Run ``urls`` interleaved over ``hosts`` through scheduler and dispatch on a fake clock,
    each attempt taking 1-3 ms; returns the connections the workers opened. Without affinity
    a job goes to any free worker, in the order workers became free (an executor's queue)."""
    now = [0.0]
    limiter = LocalLimiter(RateLimit(), clock=lambda: now[0])
    scheduler = Scheduler(limiter, clock=lambda: now[0])
    for i in range(urls):
        scheduler.add(_job(f"h{i % hosts}"))
    pools = WorkerPools(workers, pool_size=workers)
    free = list(range(workers))
    running: list[tuple[float, int, str]] = []
    rng = random.Random(7)
    connections = 0
    while True:
        while free or (affine and pools.idle_count):
            pending, _ = scheduler.next_ready(pools.idle_hosts if affine else frozenset())
            if pending is None:
                break
            host = pending.job.host
            holders = pools.holders(host)
            if affine:
                worker = pools.assign(host)
            else:
                worker = free.pop(0)
                pools._use(worker, pools._workers[worker], host)  # the same LRU, any worker
            connections += worker not in holders
            heapq.heappush(running, (now[0] + rng.uniform(0.001, 0.003), worker, host))
        if not running:
            return connections
        now[0], worker, host = heapq.heappop(running)
        limiter.release(host)
        scheduler.host_released(host)
        if affine:
            pools.release(worker)
        else:
            free.append(worker)


@pytest.mark.parametrize(("hosts", "workers"), [(50, 20), (20, 20), (200, 20), (3, 20)])
def test_connections_follow_hosts_not_workers(hosts: int, workers: int) -> None:
    affine = _simulate(hosts, workers, 5_000, affine=True)
    assert affine <= hosts + workers
    if hosts >= workers:
        assert _simulate(hosts, workers, 5_000, affine=False) > 4 * (hosts + workers)


# -- the loops --------------------------------------------------------------------------------


def test_each_worker_runs_its_own_items_on_its_own_thread_until_stopped() -> None:
    seen: list[tuple[int, int, str]] = []
    done = threading.Semaphore(0)

    def handle(worker: int, item: int) -> None:
        seen.append((worker, item, threading.current_thread().name))
        done.release()

    executor = ThreadPoolExecutor(max_workers=3)
    loops: WorkerLoops[int] = WorkerLoops(3, handle)
    loops.start(executor)
    for item in range(30):
        loops.send(item % 3, item)
    for _ in range(30):
        assert done.acquire(timeout=5)
    loops.stop()
    executor.shutdown(wait=True)  # returns: every loop ended
    threads = {worker: {name for w, _, name in seen if w == worker} for worker in range(3)}
    assert all(len(names) == 1 for names in threads.values())
    assert len(set().union(*threads.values())) == 3
    for worker in range(3):
        assert [item for w, item, _ in seen if w == worker] == list(range(worker, 30, 3))
