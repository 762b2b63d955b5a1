"""A simulated clock and a scripted executor, to unit-test the ``Runner`` without sockets or sleeps.

``Simulation`` is both the run's clock and its inbox (``Runner(clock=sim, inbox=sim)``): when
the runner waits for an answer, simulated time jumps to the next scheduled event (an answer
falling due, a cancel) instead of passing for real, so a 5 s ``Retry-After`` costs microseconds.
Before any simulated time passes it waits (for real, bounded) until the admission thread has
read the whole list, so every run starts from the same state: keep ``lookahead`` at least the
number of lines.

``ScriptedWorkers`` is an ``AttemptWorkers`` that answers each attempt from a script (status,
``Retry-After``, headers, an error, a redirect, a lost worker, a failed executor) after a
simulated delay, and keeps a log of what was sent when, for the test to assert on.
"""

from __future__ import annotations

import heapq
import itertools
import math
import queue
import threading
from collections.abc import Callable, Container, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from poolfetch.core.admission import SourceEnd
from poolfetch.core.config import FetchConfig
from poolfetch.core.executors import Answers
from poolfetch.core.models import AttemptOutcome, FetchJob, FetchResult
from poolfetch.core.runner import Runner
from poolfetch.core.scheduler import PendingJob
from poolfetch.core.shutdown import CancelToken
from poolfetch.core.source import host_key
from poolfetch.core.transport import Attempt

#: Real seconds the admission thread may take to read a test's list.
_ADMISSION_TIMEOUT_S = 10.0
#: Waits after which a run is taken to be stuck (simulated time moves at most 0.25 s a wait).
_MAX_WAITS = 50_000


class Stalled(AssertionError):
    """The runner waits for an answer that no scripted event will ever give."""


class Simulation:
    """The run's clock and its inbox, on simulated time (see the module docstring)."""

    def __init__(self, start: float = 1000.0, *, handled_waits_end_on_put: bool = False) -> None:
        """``handled_waits_end_on_put``: a wait during which a scheduled action ran (a signal
        handler) ends only when an item is put, not at its timeout, as CPython 3.11's
        ``queue.SimpleQueue.get`` may."""
        self.now = start
        self._handled_waits_end_on_put = handled_waits_end_on_put
        self._events: list[tuple[float, int, Callable[[], None]]] = []
        self._order = itertools.count()
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._source_ended = threading.Event()
        self._waits = 0

    def __call__(self) -> float:
        return self.now

    def at(self, when: float, action: Callable[[], None]) -> None:
        """Run ``action`` (on the runner's thread) once simulated time reaches ``when``."""
        heapq.heappush(self._events, (when, next(self._order), action))

    def after(self, delay: float, action: Callable[[], None]) -> None:
        self.at(self.now + delay, action)

    # -- the Inbox protocol ------------------------------------------------------------------

    def put(self, item: Any) -> None:
        self._queue.put(item)
        if isinstance(item, SourceEnd):
            self._source_ended.set()

    def get_nowait(self) -> Any:
        return self.get(block=False)

    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        if not self._source_ended.wait(_ADMISSION_TIMEOUT_S):
            raise Stalled("admission did not end: is lookahead smaller than the list?")
        deadline = math.inf if timeout is None else self.now + timeout
        waited = False
        while True:
            if self._run_due() and waited and self._handled_waits_end_on_put:
                deadline = math.inf
            try:
                return self._queue.get_nowait()
            except queue.Empty:
                if not block:
                    raise
            self._waits += 1
            if self._waits > _MAX_WAITS:
                raise Stalled(f"no end after {_MAX_WAITS} waits (simulated time {self.now:.1f})")
            due = self._events[0][0] if self._events else math.inf
            if due > deadline:
                self.now = max(self.now, deadline)
                raise queue.Empty
            if math.isinf(due):
                raise Stalled("the runner waits for ever and nothing is scheduled")
            self.now = max(self.now, due)
            waited = True

    def _run_due(self) -> bool:
        """Run the actions now due; whether there were any."""
        ran = False
        while self._events and self._events[0][0] <= self.now:
            _, _, action = heapq.heappop(self._events)
            action()
            ran = True
        return ran


@dataclass(frozen=True)
class Reply:
    """How the scripted executor answers one attempt, ``delay`` simulated seconds after it
    started. ``redirect_to``: the answer is a redirect to that URL (the next hop); ``lost``:
    the worker dies instead of answering; ``fail``: the executor cannot go on; ``silent``: no
    answer ever (an attempt still running when the run ends)."""

    status: int | None = 200
    delay: float = 0.1
    retry_after: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    error: Exception | None = None
    redirect_to: str | None = None
    lost: bool = False
    fail: Exception | None = None
    silent: bool = False


OK = Reply()


@dataclass(frozen=True)
class Sent:
    """One attempt as the executor saw it start: when, to which URL (the hop's, after a
    redirect), and how many of its attempts were running already and allowed at that moment."""

    at: float
    url: str
    host: str
    running: int
    capacity: int


@dataclass
class ScriptedWorkers:
    """An ``AttemptWorkers`` answering from ``script`` (per requested URL, one ``Reply`` per
    attempt, the last one repeated; URLs not in it get ``OK``)."""

    answers: Answers
    sim: Simulation
    script: Mapping[str, Sequence[Reply]] = field(default_factory=dict)
    capacity: int = 4
    sent: list[Sent] = field(default_factory=list)
    running: int = 0
    answered_count: int = 0
    started: bool = False
    closed: bool = False
    _tries: dict[str, int] = field(default_factory=dict)

    @property
    def sessions(self) -> int:
        return self.capacity

    @property
    def processes(self) -> int:
        return 1

    @property
    def idle_hosts(self) -> Container[str]:
        return frozenset()

    def start(self) -> None:
        self.started = True

    def flush(self) -> None:
        return None

    def answered(self, worker: int) -> None:
        self.answered_count += 1

    def close(self) -> None:
        self.closed = True

    def submit(self, pending: PendingJob) -> None:
        job = pending.job
        self.sent.append(Sent(self.sim.now, job.target, job.host, self.running, self.capacity))
        tries = self._tries[job.target] = self._tries.get(job.target, 0) + 1
        replies = self.script.get(job.target, (OK,))
        reply = replies[min(tries, len(replies)) - 1]
        if reply.silent:
            self.running += 1
            return
        started = self.sim.now
        self.running += 1
        self.sim.after(reply.delay, lambda: self._answer(pending, job, reply, started))

    def _answer(self, pending: PendingJob, job: FetchJob, reply: Reply, started: float) -> None:
        self.running -= 1
        if reply.fail is not None:
            self.answers.failed(reply.fail)
            return
        if reply.lost:
            self.answers.lost(pending)
            return
        outcome = AttemptOutcome(
            started=started,
            elapsed=reply.delay,
            status=None if reply.error is not None else reply.status,
            error=reply.error,
            retry_after=reply.retry_after,
            headers=reply.headers,
            final_url=job.target,
        )
        hop = None
        if reply.redirect_to is not None:
            target = reply.redirect_to
            hop = replace(job, hop_url=target, host=host_key(target), hops=job.hops + 1)
        self.answers.deliver(pending, Attempt(outcome, None, next_hop=hop), 0)

    def sent_to(self, url: str) -> list[Sent]:
        return [s for s in self.sent if s.url == url]


class ListSink:
    """A ``ResultSink`` that keeps the results."""

    def __init__(self) -> None:
        self.results: list[FetchResult] = []
        self.closed = False

    def write(self, result: FetchResult) -> None:
        self.results.append(result)

    def flush(self) -> None:
        return None

    def close(self) -> None:
        self.closed = True

    def by_url(self) -> dict[str, FetchResult]:
        found = {r.url: r for r in self.results}
        assert len(found) == len(self.results), "a URL was recorded twice"
        return found


def lines(urls: Sequence[str]) -> Iterator[bytes]:
    return iter([url.encode() for url in urls])


@dataclass
class EngineRun:
    """A ``Runner`` wired to a ``Simulation`` and ``ScriptedWorkers``, not yet run."""

    runner: Runner
    sim: Simulation
    sink: ListSink
    made: list[ScriptedWorkers]

    @property
    def workers(self) -> ScriptedWorkers:
        """The executor the runner built (after ``runner.run()`` has started)."""
        (workers,) = self.made
        return workers


def engine_run(
    urls: Sequence[str],
    script: Mapping[str, Sequence[Reply]] | None = None,
    *,
    config: FetchConfig | None = None,
    capacity: int = 4,
    cancel: CancelToken | None = None,
    state: Any = None,
    sim: Simulation | None = None,
) -> EngineRun:
    """A runner over ``urls`` whose attempts ``ScriptedWorkers(script, capacity)`` answers."""
    sim = sim or Simulation()
    sink = ListSink()
    made: list[ScriptedWorkers] = []

    def build(answers: Answers) -> ScriptedWorkers:
        made.append(ScriptedWorkers(answers, sim, dict(script or {}), capacity))
        return made[-1]

    runner = Runner(
        config or FetchConfig(workers=capacity),
        lines(urls),
        sink,
        clock=sim,
        inbox=sim,
        workers=build,
        cancel=cancel,
        state=state,
    )
    return EngineRun(runner, sim, sink, made)
