"""What an attempt's end tells the limits and the statistics, before anyone decides its fate.

Every attempt that ends (answered, failed at the connection, or lost with a dead worker process)
frees its place at its host; one that got an answer feeds the learned limits: the rate (a
throttle), the concurrency (an answer that says "too many at once"), the announced quota, and
the count of connection failures in a row that gives a host up (``--max-host-errors``). Only
then does the runner decide whether the URL is retried, followed to a redirect, or finished.
Main thread only.
"""

from __future__ import annotations

import logging

from poolfetch.core.concurrency import says_too_many
from poolfetch.core.hosterrors import HostErrorLimit
from poolfetch.core.limiter_api import RequestLimiter
from poolfetch.core.models import AttemptOutcome
from poolfetch.core.retrying import RetryPlanner, announced_quota, is_throttle
from poolfetch.core.scheduler import PendingJob, Scheduler
from poolfetch.core.stats import RunStats

log = logging.getLogger(__name__)


class AttemptFeedback:
    """Feeds each ended attempt to the limiter, scheduler, planner, host errors and stats."""

    def __init__(
        self,
        *,
        limiter: RequestLimiter,
        scheduler: Scheduler,
        planner: RetryPlanner,
        host_errors: HostErrorLimit,
        stats: RunStats,
        rate_headers: bool,
    ) -> None:
        self._limiter = limiter
        self._scheduler = scheduler
        self._planner = planner
        self._host_errors = host_errors
        self._stats = stats
        self._rate_headers = rate_headers

    def ended(self, pending: PendingJob, outcome: AttemptOutcome) -> None:
        """An attempt ended with ``outcome``: its place freed, what it says counted."""
        host = pending.job.host
        stats = self._stats
        self.freed(pending)
        response_status = outcome.status if outcome.error is None else None
        stats.attempt_finished(response_status, outcome.elapsed, outcome.bytes)
        stats.host_attempt(host)
        pending.attempt_log.append((response_status, outcome.elapsed, outcome.bytes))
        given_up = self._host_errors.observe(host, outcome)
        if given_up is not None:
            log.info("%s", given_up)
            self._scheduler.give_up(host, str(given_up))
        overloaded = says_too_many(outcome)
        if response_status is not None or overloaded:
            throttled = is_throttle(outcome)
            self._limiter.record_response(
                host,
                throttled=throttled,
                overloaded=overloaded,
                started=pending.dispatched,
                bare=outcome.retry_after is None,
            )
            if not throttled and response_status is not None:
                self._planner.host_answered(host)
        if self._rate_headers:
            self._limiter.record_quota(host, announced_quota(outcome), pending.dispatched)

    def freed(self, pending: PendingJob) -> None:
        """The attempt's place at its host is free again (also for one lost with its worker)."""
        host = pending.job.host
        self._stats.in_flight -= 1
        self._limiter.release(host)
        self._scheduler.host_released(host)
