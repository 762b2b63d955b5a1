"""The retry policy: which failed attempts are tried again, when, and what pauses the host.

tenacity supplies the policy objects (``stop``, ``wait``, ``retry`` predicates) and this module
evaluates them on a ``RetryCallState`` built from an attempt's outcome. The *waiting* does not
happen here and never on a worker: the scheduler turns a decision into a not-before time for the
job (and a pause for the host), so a worker is never parked in a backoff while other hosts have
work ready.
"""

from __future__ import annotations

import datetime
import email.utils
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import tenacity

from poolfetch.core.config import RetryPolicy
from poolfetch.core.errors import (
    FetchError,
    NotSentError,
    RetryAfterTooLongError,
    TransportError,
)
from poolfetch.core.models import AttemptOutcome
from poolfetch.core.ratelimit_headers import Quota

#: Statuses whose ``Retry-After`` pauses the whole host (RFC 9110 §10.2.3, RFC 6585 §4).
THROTTLE_STATUSES = frozenset({429, 503})


@dataclass(frozen=True, slots=True)
class RetryDecision:
    """What to do after a failed attempt.

    ``retry``: try again no earlier than ``wait`` seconds from now. ``pause_host``: seconds the
    whole host must rest (Retry-After, or our backoff for a throttle without one), or None.
    ``error``: the final error when not retrying.
    """

    retry: bool
    wait: float = 0.0
    pause_host: float | None = None
    error: str | None = None


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value (delta-seconds or HTTP-date).

    Garbage, negative numbers and "inf"/"nan" give None (no hint); delta-seconds too large
    for a float give ``inf`` (longer than any --max-retry-after). A date in the past
    gives 0. ``now`` is the wall-clock time for HTTP-dates (injected by tests).
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    if text.isascii() and text.isdigit():
        return float(text)  # a number too large for a float is inf: "very long"
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        return seconds if math.isfinite(seconds) and seconds >= 0 else None
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:  # the asctime form carries no zone: HTTP dates are GMT
        when = when.replace(tzinfo=datetime.UTC)
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)


def _status_of(outcome: AttemptOutcome) -> int | None:
    return outcome.status if outcome.error is None else None


#: Hosts whose run of throttle answers is remembered (the least recently throttled forgotten).
MAX_THROTTLED_HOSTS = 10_000


class RetryPlanner:
    """Evaluates the tenacity policy for the outcome of failed attempt number ``n`` of a job.

    It also keeps, per host, the run of throttle episodes without a clean answer between
    them, so that a ``429`` without ``Retry-After`` backs the *host* off exponentially: the
    pause grows with the host's episodes, not with one URL's attempts (many URLs each getting
    their first 429 would otherwise pause the host for the first backoff step for ever).
    Answers that arrive while the pause they caused is still running belong to that episode.
    """

    def __init__(
        self,
        policy: RetryPolicy,
        wall_clock: Callable[[], float] = time.time,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._policy = policy
        self._wall_clock = wall_clock
        self._clock = clock
        self._throttled: dict[str, tuple[int, float]] = {}  # host -> (episodes, episode end)
        retry_on = policy.retry_on
        self._retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(policy.retries + 1),
            wait=tenacity.wait_exponential_jitter(
                multiplier=policy.backoff, max=policy.max_backoff, jitter=policy.backoff
            ),
            retry=(
                tenacity.retry_if_exception_type(TransportError)
                | tenacity.retry_if_result(lambda status: status in retry_on)
            ),
        )

    @property
    def policy(self) -> RetryPolicy:
        return self._policy

    def backoff(self, attempt_number: int) -> float:
        """tenacity's wait after attempt ``attempt_number`` (exponential with jitter, capped)."""
        state = tenacity.RetryCallState(self._retrying, None, (), {})
        state.attempt_number = attempt_number
        return float(self._retrying.wait(state))

    def host_answered(self, host: str) -> None:
        """``host`` gave an answer that was not a throttle: its run of throttles is over."""
        if self._throttled:
            self._throttled.pop(host, None)

    def _host_pause(self, host: str | None, retry_after: float | None, attempt: int) -> float:
        """The pause for a throttled host: ``Retry-After``, or the backoff for the host's
        episode number (counting this one); without a host, for the attempt number."""
        if host is None:
            return retry_after if retry_after is not None else self.backoff(attempt)
        now = self._clock()
        episodes, until = self._throttled.pop(host, (0, -math.inf))
        if now >= until:
            episodes += 1
        pause = retry_after if retry_after is not None else self.backoff(episodes)
        self._throttled[host] = (episodes, max(until, now + pause))
        if len(self._throttled) > MAX_THROTTLED_HOSTS:
            del self._throttled[next(iter(self._throttled))]
        return pause

    def decide(
        self,
        outcome: AttemptOutcome,
        attempt_number: int,
        host: str | None = None,
        idempotent: bool = True,
    ) -> RetryDecision:
        """Decide after failed attempt ``attempt_number`` (1-based) ended with ``outcome``.

        With ``host``, a throttle counts toward that host's episodes (see the class). A request
        that is not ``idempotent`` (POST, PATCH) is retried only where the server cannot have
        acted on it (``server_cannot_have_acted``), unless the policy says ``retry_unsafe``.
        """
        state = tenacity.RetryCallState(self._retrying, None, (), {})
        state.attempt_number = attempt_number
        if outcome.error is not None:
            error = outcome.error
            state.set_exception((type(error), error, error.__traceback__))
        else:
            state.set_result(outcome.status)
        status = _status_of(outcome)
        pause: float | None = None
        retry_after: float | None = None
        if status in THROTTLE_STATUSES:
            retry_after = parse_retry_after(outcome.retry_after, self._wall_clock())
            if retry_after is None:
                retry_after = spent_quota_reset(outcome)
            if retry_after is not None or status == 429:
                pause = self._host_pause(host, retry_after, attempt_number)
            if retry_after is not None and retry_after > self._policy.max_retry_after:
                return RetryDecision(
                    retry=False,
                    pause_host=pause,
                    error=str(retry_after_too_long(retry_after, self._policy.max_retry_after)),
                )
        if not self._retrying.retry(state) or self._retrying.stop(state):
            return RetryDecision(retry=False, pause_host=pause, error=describe_failure(outcome))
        if not (idempotent or self._policy.retry_unsafe or server_cannot_have_acted(outcome)):
            cause = describe_failure(outcome)
            return RetryDecision(
                retry=False,
                pause_host=pause,
                error=f"{cause} (not retried: the server may have acted on it; --retry-unsafe"
                " retries it)",
            )
        wait = float(self._retrying.wait(state))
        if retry_after is not None:
            wait = max(wait, retry_after)
        return RetryDecision(retry=True, wait=wait, pause_host=pause)


def server_cannot_have_acted(outcome: AttemptOutcome) -> bool:
    """True when a failed attempt certainly left the server unchanged: the connection failed
    before the request was sent, or the answer was a 429 or 503 (RFC 9110 §15.6.4, RFC 6585 §4:
    the request was refused, not processed). A reset or timeout after sending is not."""
    if outcome.error is not None:
        return isinstance(outcome.error, NotSentError)
    return outcome.status in THROTTLE_STATUSES


def is_throttle(outcome: AttemptOutcome) -> bool:
    """Did the server ask us to slow down? A 429, or a 503 that names a Retry-After.

    A bare 503 is an ordinary server error (a deploy, a crash): retried, but it does not cut
    the host's adaptive rate, or a flaky backend would slow a whole run to a crawl.
    """
    if outcome.error is not None:
        return False
    return outcome.status == 429 or (outcome.status == 503 and outcome.retry_after is not None)


def spent_quota_reset(outcome: AttemptOutcome) -> float | None:
    """Seconds until the quota resets when the answer says none remains, else None: a
    throttle without ``Retry-After`` whose quota fields say when is treated as if it had it."""
    quota = outcome.quota
    if quota is None or quota.remaining > 0:
        return None
    return quota.reset_after


def announced_quota(outcome: AttemptOutcome) -> Quota | None:
    """The quota an answer announced, its reset replaced by the ``Retry-After`` of a 429/503
    when it has one (``Retry-After`` wins where both are given, as the IETF draft says)."""
    quota = outcome.quota
    if quota is None or outcome.retry_after is None or _status_of(outcome) not in THROTTLE_STATUSES:
        return quota
    retry_after = parse_retry_after(outcome.retry_after)
    return quota if retry_after is None else quota.with_reset(retry_after)


def retry_after_too_long(seconds: float, limit: float) -> RetryAfterTooLongError:
    shown = "a very long time" if seconds > sys.float_info.max / 2 else f"{seconds:.0f} s"
    return RetryAfterTooLongError(
        f"server asked to retry after {shown}, longer than max-retry-after ({limit:g} s)"
    )


def describe_failure(outcome: AttemptOutcome) -> str | None:
    """The record's ``error`` for a final outcome: the exception (saying which status the
    response had when its body failed), or the HTTP status."""
    if outcome.error is not None:
        error = outcome.error
        text = str(error) if isinstance(error, FetchError) else f"{type(error).__name__}: {error}"
        if outcome.status is not None:
            text += f", after HTTP {outcome.status} headers"
        return text
    if outcome.status is not None and outcome.status >= 400:
        return f"HTTP {outcome.status}"
    return None
