"""What one ended attempt leads to: a redirect followed, the URL finished, retried or failed.

The main thread hands every attempt that ends here, whether it answered or was lost with its
worker process. ``AttemptFeedback`` first tells the limits and the statistics what the attempt
said; then a redirect's target becomes one more attempt of the same URL, a 2xx/3xx answer
finishes the URL, and a failure is retried after the planner's delay (the host paused when the
answer asks for it) unless the planner or ``--max-host-errors`` gave up, when the URL is
recorded as failed. An attempt lost with its process runs again. Once the run is cancelled an
unfinished URL is neither retried nor recorded: it only frees its admission slot, so a resumed
run fetches it again. Main thread only.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from poolfetch.core.feedback import AttemptFeedback
from poolfetch.core.finish import Finisher
from poolfetch.core.hosterrors import HostErrorLimit
from poolfetch.core.limiter_api import RequestLimiter
from poolfetch.core.redact import redact_url
from poolfetch.core.retrying import RetryDecision, RetryPlanner, describe_failure
from poolfetch.core.scheduler import PendingJob, Scheduler
from poolfetch.core.shutdown import CancelToken
from poolfetch.core.stats import RunStats
from poolfetch.core.transport import Attempt

#: Retries and pauses are the engine's decisions: ``-v`` names them after the runner.
log = logging.getLogger("poolfetch.core.runner")


class Settler:
    """Decides the fate of each ended attempt (see the module)."""

    def __init__(
        self,
        *,
        feedback: AttemptFeedback,
        scheduler: Scheduler,
        planner: RetryPlanner,
        limiter: RequestLimiter,
        host_errors: HostErrorLimit,
        stats: RunStats,
        finish: Finisher,
        cancel: CancelToken,
        release_slot: Callable[[], None],
    ) -> None:
        self._feedback = feedback
        self._scheduler = scheduler
        self._planner = planner
        self._limiter = limiter
        self._host_errors = host_errors
        self._stats = stats
        self._finish = finish
        self._cancel = cancel
        self._release_slot = release_slot

    def settle(self, pending: PendingJob, attempt: Attempt) -> None:
        """An attempt ended: count it, then retry it later or write its record."""
        outcome = attempt.outcome
        host = pending.job.host
        self._feedback.ended(pending, outcome)
        if attempt.next_hop is not None:  # a redirect: its target is one more attempt
            if self._cancel.event.is_set():
                self._release_slot()  # not finished: a resumed run fetches it again
                return
            pending.job = attempt.next_hop
            self._scheduler.add(pending)
            return
        if outcome.error is None and outcome.status is not None and outcome.status < 400:
            self._finish.succeeded(pending, attempt)
            return
        pending.failures += 1
        idempotent = pending.job.sending.idempotent
        decision = self._planner.decide(outcome, pending.failures, host, idempotent)
        if decision.pause_host is not None:
            self._limiter.pause_host(host, decision.pause_host)
            log.info(
                "host %s paused for %.1f s (HTTP %s)", host, decision.pause_host, outcome.status
            )
        if self._cancel.event.is_set():
            self._release_slot()  # not finished: a resumed run fetches it again
            return
        if decision.retry and (gone := self._host_errors.given_up(host)) is not None:
            decision = RetryDecision(retry=False, error=str(gone))
        if decision.retry:
            log.info(
                "retry %d of %s in %.2f s: %s",
                pending.failures,
                redact_url(pending.job.url),
                decision.wait,
                describe_failure(outcome),
            )
            self._stats.retries += 1
            self._scheduler.retry_later(pending, decision.wait)
            return
        self._finish.failed(pending, outcome, decision.error)

    def rerun(self, pending: PendingJob) -> None:
        """A worker process died during this attempt: free its place and run it again."""
        self._feedback.freed(pending)
        if self._cancel.event.is_set():
            self._release_slot()  # not finished: a resumed run fetches it again
            return
        self._scheduler.add(pending)
