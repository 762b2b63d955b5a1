"""The main thread's scheduler: per-host queues, not-before times, and the limiter's verdict.

Admission puts jobs in here; the runner asks ``next_ready()`` whenever a worker is free and gets
a job whose host may start *now* (the limiter has already counted it) or the time until
something could. A host that is paused, over its rate or at its connection cap is parked, not
scanned again and again, and other hosts' jobs go first: no head-of-line blocking across hosts,
and no worker ever sleeps in a backoff or a pause.
"""

from __future__ import annotations

import heapq
import itertools
import math
import time
from collections import deque
from collections.abc import Callable, Container
from dataclasses import dataclass, field

from poolfetch.core.limiter_api import GLOBAL, HOST_BUSY, HOST_PAUSED, HOST_RATE, RequestLimiter
from poolfetch.core.models import FetchJob

#: How far down the rotation ``next_ready(prefer=...)`` looks for a preferred host, and how many
#: times in a row the host at the front may be passed over for one (then it goes first anyway).
AFFINITY_WINDOW = 64
AFFINITY_PASSES = 64


@dataclass(slots=True)
class PendingJob:
    """A job and its history; owned by the main thread.

    ``attempts`` counts every request sent for it (redirect hops and retries too, the record's
    ``attempts``); ``failures`` counts the failed ones, which the retry policy is judged on.
    After a redirect, ``job`` is the next hop.
    """

    job: FetchJob
    attempts: int = 0
    failures: int = 0
    first_started: float | None = None
    #: When its current attempt was handed to a worker (the limiter counted it from then).
    dispatched: float = 0.0
    attempt_log: list[tuple[int | None, float, int]] = field(default_factory=list)
    #: The worker process that ran its last attempt, when that has a name (a shared run's).
    ran_on: str | None = None


@dataclass(frozen=True, slots=True)
class Expired:
    """A job given up before its next attempt (its host's pause outlasts the allowed wait)."""

    pending: PendingJob
    error: str


class Scheduler:
    """Per-host FIFO queues served round-robin, with retry delays and parked hosts.

    Not thread-safe: only the main thread calls it.
    """

    def __init__(
        self,
        limiter: RequestLimiter,
        max_pause: float = math.inf,
        pause_error: Callable[[float], str] = lambda s: f"host paused for {s:.0f} s",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._limiter = limiter
        self._max_pause = max_pause
        self._pause_error = pause_error
        self._clock = clock
        self._queues: dict[str, deque[PendingJob]] = {}
        self._active: deque[str] = deque()
        self._active_set: set[str] = set()
        self._delayed: list[tuple[float, int, PendingJob]] = []
        #: Jobs waiting for a retry, per host (``held``).
        self._delayed_hosts: dict[str, int] = {}
        self._parked: list[tuple[float, int, str, str | None]] = []
        self._parked_set: set[str] = set()
        self._busy: set[str] = set()
        #: Parked hosts waiting for their rate's next token: an answer may raise the rate
        #: (``host_released``), and the wait computed at the old rate would lag it.
        self._rate_parked: set[str] = set()
        self._reserved: list[tuple[float, int, PendingJob]] = []
        self._order = itertools.count()
        self._size = 0
        self._passed: tuple[str, int] = ("", 0)
        self._given_up: dict[str, str] = {}
        self.expired: list[Expired] = []
        #: The last reason the scheduler had to wait (for the display's "waiting on").
        self.blocked_by: str | None = None

    def __len__(self) -> int:
        """Jobs held (ready, reserved or waiting for a retry), not counting those in flight."""
        return self._size + len(self._reserved)

    @property
    def reserved_count(self) -> int:
        """Jobs whose start the limiter has reserved for a moment soon (each needs a worker)."""
        return len(self._reserved)

    def reserved_wait(self) -> float:
        """Seconds until the next reserved start is due (``inf`` if none is reserved)."""
        return max(0.0, self._reserved[0][0] - self._clock()) if self._reserved else math.inf

    def reserved_due(self) -> bool:
        """A reserved start is due now (its worker was kept free for it)."""
        return bool(self._reserved) and self._reserved[0][0] <= self._clock()

    def add(self, pending: PendingJob) -> None:
        """A new job from admission: ready at once (expired at once if its host was given up)."""
        if self._given_up and pending.job.host in self._given_up:
            self.expired.append(Expired(pending, self._given_up[pending.job.host]))
            return
        self._size += 1
        self._enqueue(pending)

    def retry_later(self, pending: PendingJob, delay: float) -> None:
        """A failed attempt goes back with a not-before time ``delay`` seconds from now."""
        self._size += 1
        host = pending.job.host
        self._delayed_hosts[host] = self._delayed_hosts.get(host, 0) + 1
        heapq.heappush(self._delayed, (self._clock() + delay, next(self._order), pending))

    def held(self, host: str) -> int:
        """Jobs of ``host`` still to start: queued or waiting for a retry (not those in
        flight, nor those whose start is reserved: the limiter counted them already)."""
        queue = self._queues.get(host)
        return (len(queue) if queue else 0) + self._delayed_hosts.get(host, 0)

    def _undelay(self, host: str) -> None:
        left = self._delayed_hosts.get(host, 0) - 1
        if left > 0:
            self._delayed_hosts[host] = left
        else:
            self._delayed_hosts.pop(host, None)

    def host_released(self, host: str) -> None:
        """An attempt to ``host`` ended: a host parked at its connection cap may go again,
        and one parked for its rate is asked again (its answer may have raised the rate: a
        ramp of 4 to 20 r/s waited a whole spacing at the old rate after each raise)."""
        if host in self._busy:
            self._busy.discard(host)
            self._activate(host)
        elif host in self._rate_parked:
            self._rate_parked.discard(host)
            self._parked_set.discard(host)  # its heap entry, when due, finds it active
            self._activate(host)

    def _enqueue(self, pending: PendingJob) -> None:
        host = pending.job.host
        queue = self._queues.get(host)
        if queue is None:
            queue = self._queues[host] = deque()
        queue.append(pending)
        self._activate(host)

    def _activate(self, host: str) -> None:
        if (
            host not in self._active_set
            and host not in self._parked_set
            and host not in self._busy
            and self._queues.get(host)
        ):
            self._active.append(host)
            self._active_set.add(host)

    def _wake(self, now: float) -> None:
        while self._delayed and self._delayed[0][0] <= now:
            _, _, pending = heapq.heappop(self._delayed)
            self._size -= 1
            self._undelay(pending.job.host)
            self.add(pending)
        while self._parked and self._parked[0][0] <= now:
            _, _, host, _ = heapq.heappop(self._parked)
            self._parked_set.discard(host)
            self._rate_parked.discard(host)
            self._activate(host)

    def next_ready(self, prefer: Container[str] = frozenset()) -> tuple[PendingJob | None, float]:
        """A job that may start now (the limiter has counted it), or ``(None, seconds)`` until
        the scheduler should be asked again (``inf``: only a result can unblock it).

        ``prefer``: hosts a free worker holds a connection to; one of them near the front of
        the rotation goes first (``_bring_forward``), so connections follow hosts.
        """
        now = self._clock()
        if self._reserved and self._reserved[0][0] <= now:
            return heapq.heappop(self._reserved)[2], 0.0
        self._wake(now)
        self._bring_forward(prefer)
        wait = math.inf
        self.blocked_by = None
        for _ in range(len(self._active)):
            host = self._active[0]
            admission = self._limiter.try_acquire(host)
            if admission.granted or admission.reserved:
                queue = self._queues[host]
                pending = queue.popleft()
                self._size -= 1
                if queue:
                    self._active.rotate(-1)
                else:
                    del self._queues[host]
                    self._active.popleft()
                    self._active_set.discard(host)
                if admission.reserved:  # counted already: start it at its slot
                    heapq.heappush(
                        self._reserved, (now + admission.wait, next(self._order), pending)
                    )
                    continue
                self.blocked_by = None
                return pending, 0.0
            self.blocked_by = admission.blocked_by
            if admission.blocked_by == GLOBAL:
                wait = admission.wait
                break
            self._active.popleft()
            self._active_set.discard(host)
            if admission.blocked_by == HOST_BUSY and math.isinf(admission.wait):
                self._busy.add(host)  # this process's own release() wakes it
                continue
            if admission.blocked_by == HOST_PAUSED and admission.wait > self._max_pause:
                self._expire_host(host, admission.wait)
                continue
            heapq.heappush(
                self._parked,
                (now + admission.wait, next(self._order), host, admission.blocked_by),
            )
            self._parked_set.add(host)
            if admission.blocked_by == HOST_RATE:
                self._rate_parked.add(host)
            wait = min(wait, admission.wait)
        if self._parked:
            wait = min(wait, max(0.0, self._parked[0][0] - now))
            if self.blocked_by is None:
                self.blocked_by = self._parked[0][3]
        if self._delayed:
            wait = min(wait, max(0.0, self._delayed[0][0] - now))
        if self._reserved:
            wait = min(wait, max(0.0, self._reserved[0][0] - now))
        return None, wait

    def _bring_forward(self, prefer: Container[str]) -> None:
        """Move the first host in ``prefer`` among the next ``AFFINITY_WINDOW`` of the rotation
        to its front, unless the front host was already passed over ``AFFINITY_PASSES`` times:
        a preference that bends the round-robin order a bounded amount and never idles a
        worker (if no preferred host may start, the rotation goes on as before)."""
        active = self._active
        if len(active) < 2 or active[0] in prefer:
            return
        front = active[0]
        passed = self._passed[1] if self._passed[0] == front else 0
        if passed >= AFFINITY_PASSES:
            return
        for index, host in enumerate(itertools.islice(active, 1, AFFINITY_WINDOW), start=1):
            if host in prefer:
                del active[index]
                active.appendleft(host)
                self._passed = (front, passed + 1)
                return

    def give_up(self, host: str, error: str) -> None:
        """``host`` is given up (``--max-host-errors``): its queued and delayed jobs expire now
        with ``error``, and so does every job of it added later."""
        self._given_up[host] = error
        if host in self._active_set:
            self._active.remove(host)
            self._active_set.discard(host)
        self._expire_queue(host, error)
        kept = [entry for entry in self._delayed if entry[2].job.host != host]
        if len(kept) != len(self._delayed):
            for _, _, pending in self._delayed:
                if pending.job.host == host:
                    self._size -= 1
                    self.expired.append(Expired(pending, error))
            self._delayed_hosts.pop(host, None)
            heapq.heapify(kept)
            self._delayed = kept

    def _expire_host(self, host: str, pause: float) -> None:
        self._expire_queue(host, self._pause_error(pause))

    def _expire_queue(self, host: str, message: str) -> None:
        queue = self._queues.pop(host, deque())
        for pending in queue:
            self._size -= 1
            self.expired.append(Expired(pending, message))

    def drain(self) -> list[PendingJob]:
        """Remove and return every job held (used when a run is cancelled)."""
        jobs = [p for queue in self._queues.values() for p in queue]
        jobs.extend(p for _, _, p in self._delayed)
        jobs.extend(p for _, _, p in self._reserved)
        self._reserved.clear()
        self._queues.clear()
        self._delayed.clear()
        self._delayed_hosts.clear()
        self._active.clear()
        self._active_set.clear()
        self._parked.clear()
        self._parked_set.clear()
        self._rate_parked.clear()
        self._busy.clear()
        self._size = 0
        return jobs
