"""Which worker runs a job: connections follow hosts, not workers.

Each worker's Session keeps keep-alive connections to at most ``--pool-size`` hosts (urllib3's
``PoolManager``: an LRU of per-host pools with one connection each; a host moves to the end when
used, and a new host past the limit closes the least recently used one's connection). If any
free worker took any job, every worker would meet every host, and a list spread over more hosts
than the pool holds would reconnect for almost every request.

``WorkerPools`` is the main thread's model of those LRUs and of which workers are free. The
scheduler asks it which hosts a free worker is warm for (``idle_hosts``: it prefers a job of one
of those), and ``assign`` picks the worker for the job it chose: a free worker already connected
to that host (the one with the fewest hosts, keeping the well-connected ones free for theirs),
else the free worker whose pool loses least (one with room; else one whose least recently used
host another worker also holds; else the one whose least recently used host was used longest
ago). A host's jobs so stay on as few workers as there are jobs of it running at once.

Affinity is only a preference: ``assign`` always returns a worker, the free one if only one is
free. Not thread-safe: one thread at a time (the main thread; ``ProcessWorkers`` holds a lock).
"""

from __future__ import annotations

import itertools
from collections import OrderedDict

#: The load of a retired worker: never the least loaded while a live one is left.
_RETIRED = 1 << 30


class _Worker:
    """One worker as the main thread sees it: jobs handed to it and not answered yet, and its
    pool's hosts in LRU order (least recently used first) with the tick of their last use."""

    __slots__ = ("hosts", "load")

    def __init__(self) -> None:
        self.load = 0
        self.hosts: OrderedDict[str, int] = OrderedDict()


class IdleHosts:
    """The hosts some free worker holds a connection to (``host in idle_hosts``)."""

    __slots__ = ("_pools",)

    def __init__(self, pools: WorkerPools) -> None:
        self._pools = pools

    def __contains__(self, host: object) -> bool:
        holders = self._pools._holders.get(host) if isinstance(host, str) else None
        if not holders:
            return False
        workers = self._pools._workers
        return any(workers[index].load == 0 for index in holders)


class WorkerPools:
    """The free workers and the hosts each worker's pool holds; picks a worker for each job."""

    def __init__(self, workers: int, pool_size: int) -> None:
        if workers < 1 or pool_size < 1:
            raise ValueError("workers and pool_size must be at least 1")
        self._pool_size = pool_size
        self._workers = [_Worker() for _ in range(workers)]
        self._idle: set[int] = set(range(workers))
        #: host -> the workers whose pool holds it
        self._holders: dict[str, set[int]] = {}
        self._tick = itertools.count()
        self.idle_hosts = IdleHosts(self)

    @property
    def size(self) -> int:
        """Workers in the model, retired ones included."""
        return len(self._workers)

    @property
    def idle_count(self) -> int:
        return len(self._idle)

    def holders(self, host: str) -> frozenset[int]:
        """The workers whose pool holds ``host`` (a connection is or was recently open)."""
        return frozenset(self._holders.get(host, ()))

    def hosts_of(self, worker: int) -> list[str]:
        """The hosts ``worker``'s pool holds, least recently used first."""
        return list(self._workers[worker].hosts)

    def assign(self, host: str) -> int:
        """The worker that runs the next job of ``host``; counted busy until ``release``."""
        index = self._choose(host)
        worker = self._workers[index]
        worker.load += 1
        self._idle.discard(index)
        self._use(index, worker, host)
        return index

    def release(self, worker: int) -> None:
        """``worker`` answered one job."""
        state = self._workers[worker]
        state.load = max(0, state.load - 1)
        if state.load == 0:
            self._idle.add(worker)

    def only_host_of_all(self, host: str, workers: range) -> bool:
        """Whether ``host`` is the one host the pool of each of ``workers`` holds (so any of
        them is as good as any other for its jobs)."""
        every = self._workers
        return all(len(hosts := every[index].hosts) == 1 and host in hosts for index in workers)

    def retire(self, worker: int) -> None:
        """``worker`` is gone (its process died): its connections with it; it gets no job until
        ``reset``."""
        self._forget_hosts(worker)
        self._workers[worker].load = _RETIRED
        self._idle.discard(worker)

    def reset(self, worker: int) -> None:
        """``worker`` is new (a replacement process): free, with no connection yet."""
        self._forget_hosts(worker)
        self._workers[worker].load = 0
        self._idle.add(worker)

    def _forget_hosts(self, index: int) -> None:
        for host in self._workers[index].hosts:
            holders = self._holders[host]
            holders.discard(index)
            if not holders:
                del self._holders[host]
        self._workers[index].hosts.clear()

    def _choose(self, host: str) -> int:
        candidates = self._idle
        if not candidates:  # more jobs than workers (reserved starts): the least loaded one
            least = min(w.load for w in self._workers)
            candidates = {i for i, w in enumerate(self._workers) if w.load == least}
        warm = self._holders.get(host)
        if warm:
            ready = warm & candidates
            if len(ready) == 1:
                return next(iter(ready))
            if ready:
                workers = self._workers
                return min(ready, key=lambda i: (len(workers[i].hosts), i))
        return min(candidates, key=self._loss)

    def _loss(self, index: int) -> tuple[int, int, int, int]:
        """What giving ``index`` a new host costs its pool, smaller is better."""
        hosts = self._workers[index].hosts
        if len(hosts) < self._pool_size:
            return (0, 0, len(hosts), index)
        victim, last_used = next(iter(hosts.items()))
        only_copy = 1 if len(self._holders.get(victim, ())) <= 1 else 0
        return (1, only_copy, last_used, index)

    def _use(self, index: int, worker: _Worker, host: str) -> None:
        hosts = worker.hosts
        if host in hosts:
            hosts.move_to_end(host)
        else:
            if len(hosts) >= self._pool_size:
                victim, _ = hosts.popitem(last=False)
                holders = self._holders[victim]
                holders.discard(index)
                if not holders:
                    del self._holders[victim]
            self._holders.setdefault(host, set()).add(index)
        hosts[host] = next(self._tick)
