"""The end of a URL: its record into the state and the sink, its body into place, its slot freed.

Every URL ends here exactly once, whichever way it ends: a success (its complete body renamed to
its final name, unless a child process already did), a failure the retry planner gave up on, a
job that expired in the scheduler (its host paused too long, or given up), or a line that triage
decided without a request (bad, skipped, unchanged). The state hears of it before the sink, so a
record on standard output always means the state has it too; then the URL's admission slot is
freed, which lets the reader admit the next line. Main thread only.
"""

from __future__ import annotations

from collections.abc import Callable

from poolfetch.core.errors import OutputError
from poolfetch.core.models import AttemptOutcome, FetchResult
from poolfetch.core.records import job_result
from poolfetch.core.scheduler import Expired, PendingJob
from poolfetch.core.shutdown import CancelToken
from poolfetch.core.sinks import BodyStore, ResultSink, flush_or_stop, write_or_stop
from poolfetch.core.state import StateStore
from poolfetch.core.stats import RunStats
from poolfetch.core.transport import Attempt
from poolfetch.core.triage import apply_not_modified


class Finisher:
    """Writes the record of every URL that ends (see the module)."""

    def __init__(
        self,
        *,
        sink: ResultSink,
        stats: RunStats,
        state: StateStore | None,
        store: BodyStore | None,
        cancel: CancelToken,
        release_slot: Callable[[], None],
        record_headers: bool,
        clock: Callable[[], float],
    ) -> None:
        self._sink = sink
        self._stats = stats
        self._state = state
        self._store = store
        self._cancel = cancel
        self._release_slot = release_slot
        self._record_headers = record_headers
        self._clock = clock

    def succeeded(self, pending: PendingJob, attempt: Attempt) -> None:
        """A 2xx/3xx answer: the body into place (unless unchanged), then the record."""
        outcome = attempt.outcome
        result = self._result(pending, outcome, ok=True)
        job = pending.job
        unchanged = apply_not_modified(result, job.request.key(job.url), self._state)
        if attempt.saved_path is not None:
            result.path = attempt.saved_path
        elif not unchanged and attempt.pending is not None and self._store is not None:
            try:
                result.path = self._store.commit(attempt.pending)
            except OutputError as exc:
                result.ok, result.error = False, str(exc)
        self._record(pending, result, outcome)

    def failed(self, pending: PendingJob, outcome: AttemptOutcome, error: str | None) -> None:
        """No more attempts: the last one's outcome, with ``error``."""
        self._record(pending, self._result(pending, outcome, ok=False, error=error), outcome)

    def expired(self, gone: list[Expired]) -> None:
        """Jobs the scheduler dropped (emptied from ``gone``): each fails with its error."""
        while gone:
            job = gone.pop()
            outcome = AttemptOutcome(started=self._clock(), elapsed=0.0, status=None)
            self.failed(job.pending, outcome, job.error)

    def emit(self, result: FetchResult) -> None:
        """Write one record and free its admission slot."""
        write_or_stop(self._sink, result, self._cancel)
        self._stats.record_written(result)
        self._release_slot()

    def flush(self) -> None:
        """Hand the records written since the last call to their reader (once per turn of the
        runner's loop)."""
        flush_or_stop(self._sink, self._cancel)

    def _record(self, pending: PendingJob, result: FetchResult, outcome: AttemptOutcome) -> None:
        """The state first, then the record."""
        if self._state is not None:
            job = pending.job
            self._state.record(job.request.key(job.url), result, outcome, job.request)
        self.emit(result)

    def _result(
        self, pending: PendingJob, outcome: AttemptOutcome, ok: bool, error: str | None = None
    ) -> FetchResult:
        started = pending.first_started if pending.first_started is not None else outcome.started
        end = outcome.started + outcome.elapsed
        result = job_result(
            pending.job,
            outcome,
            ok=ok,
            attempts=pending.attempts,
            elapsed_ms=max(0.0, end - started) * 1000.0,
            error=error,
            record_headers=self._record_headers,
        )
        if pending.ran_on is not None:
            result.extra["worker"] = pending.ran_on
        return result
