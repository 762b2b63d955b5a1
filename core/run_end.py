"""The end of a run: the grace period for attempts in flight, then closing what the run wrote.

After a cancel (a signal, a closed standard output) admission has stopped and nothing new
starts; the attempts in flight get a grace period (``GRACE_PERIOD_S``, never longer than the
read timeout) in which an answer is settled as usual (recorded, its body saved, the state
told); what is still unfinished when it ends is abandoned. Then, however the run ended, its
outputs are closed in order: the body store (its temporary files removed), the state (marked
finished only for a run that completed and read its whole input), the sink, and the shared byte
line of ``--limit-rate`` with ``--processes``. Also here: how a run ended, as the CLI sees it
(``RunOutcome``), and the worker failures that end it early. Main thread only.
"""

from __future__ import annotations

import queue
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from poolfetch.core.bandwidth import SharedLine
from poolfetch.core.config import FetchConfig
from poolfetch.core.errors import CoordinationError, WorkerProcessError
from poolfetch.core.exit_codes import ExitCode
from poolfetch.core.inbox import Done, Inbox, InboxItem, Lost
from poolfetch.core.partials import PartialBodies, PartialNotice
from poolfetch.core.scheduler import Scheduler
from poolfetch.core.settle import Settler
from poolfetch.core.shutdown import CancelToken, ForcedExit
from poolfetch.core.sinks import BodyStore, ResultSink
from poolfetch.core.state import StateStore
from poolfetch.core.stats import RunStats

#: How long in-flight attempts may finish after a cancel before they are abandoned.
GRACE_PERIOD_S = 3.0
#: The summary's ``interrupted`` when a shared run's Redis failed (exit 69).
REDIS_UNAVAILABLE = "redis-unavailable"
#: Errors of the workers that end a run early, its summary still written (``NO_PROCESSES`` or
#: ``UNAVAILABLE``).
EXECUTOR_FAILURES = (WorkerProcessError, CoordinationError)


@dataclass(frozen=True, slots=True)
class RunOutcome:
    """How the run ended: the exit code the CLI should use, and the summary."""

    exit_code: ExitCode
    summary: dict[str, Any]
    abandoned: int


class RunEnd:
    """The grace period after a cancel and the closing of a run's outputs (see the module)."""

    def __init__(
        self,
        *,
        config: FetchConfig,
        cancel: CancelToken,
        clock: Callable[[], float],
        inbox: Inbox[InboxItem],
        scheduler: Scheduler,
        settler: Settler,
        note_partial: Callable[[PartialNotice], None],
        stats: RunStats,
        sink: ResultSink,
        state: StateStore | None,
        store: BodyStore | None,
        partials: PartialBodies | None,
        line: SharedLine | None,
    ) -> None:
        self._config = config
        self._cancel = cancel
        self._clock = clock
        self._inbox = inbox
        self._scheduler = scheduler
        self._settler = settler
        self._note_partial = note_partial
        self._stats = stats
        self._sink = sink
        self._state = state
        self._store = store
        self._partials = partials
        self._line = line

    def settle_in_flight(self, *, grace: bool = True) -> int:
        """After a cancel: let in-flight attempts finish for a grace period, then give up.

        An attempt that completes within the grace is settled as usual (recorded, its body
        saved, the state told); what is still unfinished when it ends is abandoned. Returns
        how many were. Without ``grace`` (a second signal came already) nothing is waited for.
        """
        if not self._cancel.event.is_set():
            return 0
        self._scheduler.drain()
        if not grace:
            return self._stats.in_flight
        deadline = self._clock() + min(GRACE_PERIOD_S, self._config.timeouts.read)
        try:
            while self._stats.in_flight > 0:
                remaining = deadline - self._clock()
                if remaining <= 0:
                    break
                try:
                    item = self._inbox.get(timeout=remaining)
                except queue.Empty:
                    break
                if isinstance(item, Done):
                    self._settler.settle(item.pending, item.attempt)
                elif isinstance(item, PartialNotice):
                    self._note_partial(item)
                elif isinstance(item, Lost):
                    self._settler.rerun(item.pending)
        except ForcedExit:
            pass
        return self._stats.in_flight

    def exit_code(self, source_error: str | None) -> ExitCode:
        """The exit code of a run the workers did not fail: the signal's or closed output's,
        a usage error when the input could not be read, else whether any URL failed."""
        code = self._cancel.exit_code
        if code is not None:
            return code
        if source_error is not None:
            return ExitCode.USAGE
        return ExitCode.URLS_FAILED if self._stats.failed else ExitCode.OK

    def close(
        self, *, completed: bool, failure: Exception | None, source_error: str | None
    ) -> None:
        """Close the outputs; ``completed``: the run was not cancelled and did not fail,
        ``source_error``: why the input could not be read to its end."""
        if self._cancel.signal is not None:
            self._stats.interrupted = self._cancel.signal.name
        elif isinstance(failure, CoordinationError):
            self._stats.interrupted = REDIS_UNAVAILABLE
        if completed and self._config.refresh and self._partials is not None:
            self._clean_partials(source_error)
        if self._store is not None:
            self._store.close()
        if self._state is not None:
            self._state.finish(completed=completed and source_error is None)
        self._sink.close()
        if self._line is not None:
            self._line.close(remove=True)

    def _clean_partials(self, source_error: str | None) -> None:
        """``--refresh`` saw the whole list: remove partial bodies of URLs no longer in it."""
        if self._state is None or self._store is None or source_error is not None:
            return
        for path in self._state.stale_partials():
            self._store.remove_partial(path)
