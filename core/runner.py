"""The engine: wires admission, scheduler, limiter, workers, sinks, state and stats.

Data flows one way. A reader thread parses sources into the main thread's inbox; the main thread
keeps per-host queues (``Scheduler``), asks the limiter before every attempt and hands each job
that may start now to the worker it chose (``WorkerPools``: one already connected to that host if
one is free); each worker does one attempt on its thread-local Session and puts the outcome back
in the inbox. Only the main thread decides retries, renames body files, writes records and
state, and counts; it pushes a stats snapshot to the display a few times a second.
Cancellation is one event: admission stops, in-flight attempts get a grace period, temporary
files are removed and the state is committed. What an ended attempt leads to is decided in
``settle.py``; the grace period and the closing of the outputs are ``run_end.py``'s.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from poolfetch.core.admission import AdmissionReader, SourceEnd, SourceItem, SourceLine
from poolfetch.core.bandwidth import SharedLine
from poolfetch.core.bodies import BodyTarget
from poolfetch.core.config import FetchConfig
from poolfetch.core.executors import AttemptWorkers, WorkersFactory, local_workers, run_attempt
from poolfetch.core.feedback import AttemptFeedback
from poolfetch.core.finish import Finisher
from poolfetch.core.hosterrors import HostErrorLimit
from poolfetch.core.inbox import Done, Failed, Inbox, InboxItem, Lost, Woken, answers_to
from poolfetch.core.limiter import LocalLimiter
from poolfetch.core.limiter_api import RequestLimiter
from poolfetch.core.models import FetchJob, FetchResult
from poolfetch.core.partials import PartialBodies, PartialNotice, TempBodies
from poolfetch.core.rates import describe_rates
from poolfetch.core.report import NullReporter, Reporter
from poolfetch.core.request import RequestBuilder
from poolfetch.core.retrying import RetryPlanner, retry_after_too_long
from poolfetch.core.run_end import (
    EXECUTOR_FAILURES,
    GRACE_PERIOD_S,
    REDIS_UNAVAILABLE,
    RunEnd,
    RunOutcome,
)
from poolfetch.core.scheduler import PendingJob, Scheduler
from poolfetch.core.sessions import SessionFactory
from poolfetch.core.settle import Settler
from poolfetch.core.shutdown import CancelToken, ForcedExit
from poolfetch.core.sinks import BodyStore, ResultSink
from poolfetch.core.source import host_key
from poolfetch.core.state import StateStore
from poolfetch.core.stats import RunStats
from poolfetch.core.transport import Transport
from poolfetch.core.triage import OutputClaims, triage

log = logging.getLogger(__name__)

#: How often the display gets a fresh snapshot, and the longest the main loop sleeps.
REPORT_INTERVAL_S = 0.25

#: The engine and the names its callers use with it (defined in ``run_end.py``, ``inbox.py``).
__all__ = [
    "EXECUTOR_FAILURES",
    "GRACE_PERIOD_S",
    "REDIS_UNAVAILABLE",
    "REPORT_INTERVAL_S",
    "Inbox",
    "RunOutcome",
    "Runner",
]


class Runner:
    """One run of poolfetch over some input lines."""

    def __init__(
        self,
        config: FetchConfig,
        lines: Iterator[bytes | SourceLine],
        sink: ResultSink,
        *,
        version: str = "0",
        reporter: Reporter | None = None,
        limiter: RequestLimiter | None = None,
        state: StateStore | None = None,
        cancel: CancelToken | None = None,
        clock: Callable[[], float] = time.monotonic,
        workers: WorkersFactory | None = None,
        inbox: Inbox[Any] | None = None,
    ) -> None:
        """``workers``: what runs the attempts (default: this process's threads, or
        ``--processes`` children). ``inbox``: where answers and source lines meet the main
        thread, and what it waits on (default: a ``queue.SimpleQueue``; with ``clock``, what
        makes a run's time testable)."""
        self._config = config
        self._version = version
        self._sink = sink
        self._reporter = reporter or NullReporter()
        self._limiter = limiter or LocalLimiter(
            config.rate, clock, config.workers, backlog=self._host_backlog
        )
        self._state = state
        self._cancel = cancel or CancelToken()
        self._clock = clock
        self._inbox: Inbox[InboxItem] = inbox if inbox is not None else queue.SimpleQueue()
        self._cancel.wake_on_cancel(lambda: self._inbox.put(Woken()))
        self._reader = AdmissionReader(lines, self._inbox.put, config.lookahead, self._cancel.event)
        self._planner = RetryPlanner(config.retry, clock=clock)
        self._host_errors = HostErrorLimit(config.max_host_errors)
        self._scheduler = Scheduler(
            self._limiter,
            max_pause=config.retry.max_retry_after,
            pause_error=lambda s: str(retry_after_too_long(s, config.retry.max_retry_after)),
            clock=clock,
        )
        self._stats = RunStats(
            workers=config.workers, clock=clock, rates=describe_rates(config.rate)
        )
        self._feedback = AttemptFeedback(
            limiter=self._limiter,
            scheduler=self._scheduler,
            planner=self._planner,
            host_errors=self._host_errors,
            stats=self._stats,
            rate_headers=config.rate.rate_headers,
        )
        self._store = BodyStore(config.output_dir) if config.output_dir is not None else None
        self._sessions = SessionFactory(config, version)
        #: Set when the grace period after a cancel ends: bodies still being read are
        #: abandoned then, not at the signal (an answer finishing within the grace is kept).
        self._abandon = threading.Event()
        self._requests = RequestBuilder(
            config.request, config.headers, saves_bodies=config.output_dir is not None
        )
        self._claims = OutputClaims()
        self._finish = Finisher(
            sink=sink,
            stats=self._stats,
            state=state,
            store=self._store,
            cancel=self._cancel,
            release_slot=self._reader.release_slot,
            record_headers=bool(self._requests.record_headers),
            clock=clock,
        )
        self._settler = Settler(
            feedback=self._feedback,
            scheduler=self._scheduler,
            planner=self._planner,
            limiter=self._limiter,
            host_errors=self._host_errors,
            stats=self._stats,
            finish=self._finish,
            cancel=self._cancel,
            release_slot=self._reader.release_slot,
        )
        self._partials: PartialBodies | None = None
        bodies: BodyTarget | None = None
        if self._store is not None and config.resume_partial and state is not None:
            self._partials = bodies = PartialBodies(self._store, self._inbox.put)
        elif self._store is not None:
            bodies = TempBodies(self._store)
        #: ``--limit-rate`` with ``--processes``: one byte line for this process's threads and
        #: the children's (removed by ``RunEnd.close``).
        self._line = (
            SharedLine.create(time.monotonic())
            if workers is None and config.processes > 1 and config.limit_rate is not None
            else None
        )
        self._end = RunEnd(
            config=config,
            cancel=self._cancel,
            clock=clock,
            inbox=self._inbox,
            scheduler=self._scheduler,
            settler=self._settler,
            note_partial=self._note_partial,
            stats=self._stats,
            sink=sink,
            state=state,
            store=self._store,
            partials=self._partials,
            line=self._line,
        )
        self._transport = Transport(
            config, self._sessions, bodies, self._abandon, clock, bandwidth_line=self._line
        )
        self._source_done = False
        self._source_error: str | None = None
        self._workers_factory = workers
        self._workers: AttemptWorkers | None = None
        self._failure: Exception | None = None
        #: The summary as the run ended; set also when the workers failed (``run`` raises).
        self.summary: dict[str, Any] | None = None

    @property
    def stats(self) -> RunStats:
        return self._stats

    def set_total(self, total: int) -> None:
        """The number of URLs, when a background count finds it."""
        self._stats.total = total
        self._reporter.set_total(total)

    def run(self) -> RunOutcome:
        """Run to the end; raises one of ``EXECUTOR_FAILURES`` (after the summary is made,
        ``self.summary``) when the workers fail."""
        workers = self._workers = self._start_workers()
        self._stats.sessions = workers.sessions
        self._stats.processes = workers.processes
        try:
            self._begin_state()
        except BaseException:  # the workers are running: stop them, or the process hangs
            self._abandon.set()
            workers.close()
            raise
        self._reporter.start(self._stats.total)
        self._reader.start()
        abandoned = 0
        completed = False
        try:
            forced = False
            try:
                self._loop(workers)
            except ForcedExit:  # a second signal before the loop saw the first: no grace
                forced = True
            if self._failure is None:
                abandoned = self._end.settle_in_flight(grace=not forced)
                completed = not self._cancel.event.is_set()
        except EXECUTOR_FAILURES as exc:
            self._failure = exc
        finally:
            self._cancel.closing()  # a signal now would only cut the clean-up short
            self._abandon.set()
            workers.close()
            self._stats.processes = workers.processes
            self._end.close(
                completed=completed, failure=self._failure, source_error=self._source_error
            )
        view = self._limiter_view()
        summary = self.summary = self._stats.summary(
            self._stats.busiest_hosts(dict(view["throttled"]), dict(view["concurrency"]))
        )
        self._reporter.finish(self._stats.snapshot(view), summary)
        if self._failure is not None:
            raise self._failure
        return RunOutcome(self._end.exit_code(self._source_error), summary, abandoned)

    def _begin_state(self) -> None:
        """Open the run in the state file; after an interrupted run, sweep the temporary
        files it left."""
        if self._state is None:
            return
        self._state.begin(refresh=self._config.refresh)
        if self._state.follows_interrupted and self._store is not None:
            swept = self._store.sweep_stale_temps()
            if swept:
                log.info("removed %d temporary files left by the interrupted run", swept)

    def _start_workers(self) -> AttemptWorkers:
        """Start every worker (and so build every Session) before the first request."""
        answers = answers_to(self._inbox)
        if self._workers_factory is not None:
            workers = self._workers_factory(answers)
        else:
            workers = local_workers(
                self._config, self._version, self._sessions, self._work, answers, self._line
            )
        workers.start()
        return workers

    def _host_backlog(self, host: str) -> int | None:
        """``host``'s attempts still to start, once the source is fully read (the limiter
        asks from the main thread, inside ``Scheduler.next_ready``)."""
        return self._scheduler.held(host) if self._source_done else None

    # -- main loop ---------------------------------------------------------------------------

    def _loop(self, workers: AttemptWorkers) -> None:
        stats = self._stats
        next_report = self._clock()
        while not self._cancel.event.is_set() and self._failure is None:
            next_try = self._dispatch(workers)
            self._finish.flush()  # the records of the last turn, after its jobs went out
            if self._source_done and stats.in_flight == 0 and not len(self._scheduler):
                break
            now = self._clock()
            if now >= next_report:
                self._reporter.update(stats.snapshot(self._limiter_view()))
                next_report = now + REPORT_INTERVAL_S
            # the time spent flushing and reporting is not added to the wait for the next start
            timeout = max(0.0, min(next_try, next_report) - self._clock())
            idle_workers = stats.in_flight < workers.capacity and len(self._scheduler)
            waited_from = now
            try:
                item = self._inbox.get(timeout=timeout) if timeout > 0 else self._inbox.get_nowait()
            except queue.Empty:
                item = None
            if idle_workers and self._scheduler.blocked_by is not None:
                stats.wait_s[self._scheduler.blocked_by] += self._clock() - waited_from
            if self._state is not None:
                self._state.commit_if_due()
            while item is not None:
                self._handle(item)
                if self._cancel.event.is_set() or self._failure is not None:
                    break  # before taking the next item: it stays for the grace period
                try:
                    item = self._inbox.get_nowait()
                except queue.Empty:
                    item = None

    def _dispatch(self, workers: AttemptWorkers) -> float:
        """Hand the workers every job that may start now; return when (on the runner's clock)
        the next one may."""
        self._flush_expired()
        while self._stats.in_flight + self._scheduler.reserved_count < workers.capacity or (
            self._scheduler.reserved_due()
        ):
            pending, wait = self._scheduler.next_ready(workers.idle_hosts)
            next_try = self._clock() + wait if pending is None else 0.0
            self._flush_expired()
            if pending is None:
                workers.flush()
                self._stats.waiting_on = self._scheduler.blocked_by
                return next_try
            pending.attempts += 1
            pending.dispatched = self._clock()
            if pending.first_started is None:
                pending.first_started = pending.dispatched
            self._stats.in_flight += 1
            workers.submit(pending)
        workers.flush()
        self._stats.waiting_on = None
        return self._clock() + min(REPORT_INTERVAL_S, self._scheduler.reserved_wait())

    def _work(self, worker: int, pending: PendingJob) -> None:
        """Worker thread: one attempt; always answers, whatever happens."""
        attempt = run_attempt(self._transport, pending.job, self._clock)
        self._inbox.put(Done(pending, attempt, worker))

    def _handle(self, item: InboxItem) -> None:
        if isinstance(item, Done):
            if self._workers is not None:
                self._workers.answered(item.worker)
            self._settler.settle(item.pending, item.attempt)
        elif isinstance(item, Lost):
            self._settler.rerun(item.pending)
        elif isinstance(item, SourceItem):
            self._admit(item)
        elif isinstance(item, PartialNotice):
            self._note_partial(item)
        elif isinstance(item, Failed):
            self._failure = item.error
        elif isinstance(item, SourceEnd):
            self._source_done = True
            self._source_error = item.error

    # -- admission ---------------------------------------------------------------------------

    def _admit(self, item: SourceItem) -> None:
        decided = triage(item, self._state, self._requests, self._claims)
        if isinstance(decided, FetchResult):
            self._finish.emit(decided)
            return
        job = FetchJob(
            seq=item.seq,
            url=decided.url,
            host=host_key(decided.url),
            validators=decided.validators,
            request=decided.request,
            source=item.source,
            line=item.number,
        )
        if self._partials is not None and self._state is not None:
            self._partials.expect(job, self._state.partial(job.request.key(job.url)))
        self._scheduler.add(PendingJob(job))

    def _note_partial(self, notice: PartialNotice) -> None:
        """A worker's partial body file (-C): the state records it (see ``partials.py``)."""
        if self._state is not None:
            if notice.kind == "started":
                self._state.partial_started(notice.key, notice.path, notice.validator)
            elif notice.kind == "kept":
                self._state.partial_kept(notice.key, notice.held)
            else:
                self._state.partial_dropped(notice.key)
        notice.done.set()

    # -- results -----------------------------------------------------------------------------

    def _flush_expired(self) -> None:
        if self._scheduler.expired:
            self._finish.expired(self._scheduler.expired)

    def _limiter_view(self) -> dict[str, Any]:
        view = self._limiter.snapshot()
        return {
            "paused": view.paused,
            "throttled": view.throttled,
            "global_qps": view.global_qps,
            "concurrency": view.concurrency,
        }
