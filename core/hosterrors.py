"""``--max-host-errors``: give up a host that keeps failing at the connection level.

A host that refuses connections, does not resolve, fails TLS or times out will most likely do
the same for every URL of it still queued; retrying each of them (``--retries`` times, with
timeouts) would keep a run busy for minutes after the answer is clear. ``HostErrorLimit``
counts, per host, the attempts in a row that failed before any response arrived; any response
(whatever its status: the host is up) ends the run of failures. At the limit the host is given
up for the rest of the run, and the scheduler fails its remaining URLs at once.

Owned by the main thread (the runner settles attempts in the order they finish).
"""

from __future__ import annotations

from poolfetch.core.errors import (
    ConnectError,
    HostGivenUpError,
    RequestTimeout,
    TlsError,
)
from poolfetch.core.models import AttemptOutcome

#: Failures that say the host cannot be reached: refused, reset, DNS, TLS, timeouts.
CONNECTION_FAILURES: tuple[type[Exception], ...] = (ConnectError, RequestTimeout, TlsError)
#: Hosts whose current run of failures is remembered (the oldest forgotten beyond this).
MAX_COUNTED_HOSTS = 10_000


def is_connection_failure(outcome: AttemptOutcome) -> bool:
    """The attempt failed before a response arrived, for a reason of the connection.

    A body cut off or over ``--max-time`` after the headers came is not one: the host answered.
    """
    return outcome.status is None and isinstance(outcome.error, CONNECTION_FAILURES)


class HostErrorLimit:
    """Per-host runs of connection failures, and the hosts given up (``limit`` 0: never)."""

    def __init__(self, limit: int) -> None:
        if limit < 0:
            raise ValueError("limit must be 0 or more")
        self._limit = limit
        self._failures: dict[str, int] = {}
        self._given_up: dict[str, HostGivenUpError] = {}

    def observe(self, host: str, outcome: AttemptOutcome) -> HostGivenUpError | None:
        """Count one finished attempt to ``host``; the error for its URLs when this attempt
        made the host reach the limit (only once per host), else None."""
        if not self._limit:
            return None
        if outcome.status is not None:
            if self._failures:
                self._failures.pop(host, None)
            return None
        if not is_connection_failure(outcome) or host in self._given_up:
            return None
        count = self._failures.pop(host, 0) + 1
        if count < self._limit:
            self._failures[host] = count  # re-inserted last: the dict is oldest-first
            if len(self._failures) > MAX_COUNTED_HOSTS:
                del self._failures[next(iter(self._failures))]
            return None
        error = HostGivenUpError(
            f"host {host} given up after {count} connection failures in a row "
            f"(max-host-errors {self._limit}); the last: {outcome.error}"
        )
        self._given_up[host] = error
        return error

    def given_up(self, host: str) -> HostGivenUpError | None:
        """The error of a host that was given up, or None."""
        return self._given_up.get(host) if self._given_up else None
