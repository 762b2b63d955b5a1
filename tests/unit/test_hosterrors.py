"""--max-host-errors: connection failures in a row per host, any answer ends the run of them,
and the scheduler fails a given-up host's remaining jobs at once."""

from __future__ import annotations

from itertools import count

from poolfetch.core.config import RateLimit
from poolfetch.core.errors import (
    BodyTooLargeError,
    CertificateError,
    ConnectError,
    ProtocolError,
    RequestTimeout,
)
from poolfetch.core.hosterrors import HostErrorLimit, is_connection_failure
from poolfetch.core.limiter import LocalLimiter
from poolfetch.core.models import AttemptOutcome, FetchJob
from poolfetch.core.scheduler import PendingJob, Scheduler

DEAD, LIVE = "dead.test:80", "live.test:80"
_seq = count()


def _failed(error: Exception, status: int | None = None) -> AttemptOutcome:
    return AttemptOutcome(started=0.0, elapsed=0.1, status=status, error=error)


def _answered(status: int) -> AttemptOutcome:
    return AttemptOutcome(started=0.0, elapsed=0.1, status=status)


REFUSED = _failed(ConnectError("connection failed (refused)"))


def _job(host: str) -> PendingJob:
    name = host.split(":", maxsplit=1)[0]
    return PendingJob(FetchJob(seq=next(_seq), url=f"http://{name}/{next(_seq)}", host=host))


def test_the_limit_is_reached_after_n_failures_in_a_row() -> None:
    limit = HostErrorLimit(3)
    assert limit.observe(DEAD, REFUSED) is None
    assert limit.observe(DEAD, REFUSED) is None
    error = limit.observe(DEAD, REFUSED)
    assert error is not None
    assert "given up" in str(error) and DEAD in str(error) and "refused" in str(error)
    assert limit.given_up(DEAD) is error
    assert limit.observe(DEAD, REFUSED) is None  # reported once
    assert limit.given_up(LIVE) is None


def test_any_answer_ends_the_run_of_failures() -> None:
    limit = HostErrorLimit(2)
    limit.observe(DEAD, REFUSED)
    limit.observe(DEAD, _answered(503))  # an error status, but the host is up
    assert limit.observe(DEAD, REFUSED) is None
    assert limit.observe(DEAD, REFUSED) is not None


def test_hosts_are_counted_apart() -> None:
    limit = HostErrorLimit(2)
    limit.observe(DEAD, REFUSED)
    limit.observe(LIVE, REFUSED)
    limit.observe(LIVE, _answered(200))
    assert limit.observe(LIVE, REFUSED) is None
    assert limit.observe(DEAD, REFUSED) is not None


def test_what_counts_as_a_connection_failure() -> None:
    assert is_connection_failure(REFUSED)
    assert is_connection_failure(_failed(RequestTimeout("connect timeout")))
    assert is_connection_failure(_failed(CertificateError("certificate of x not trusted")))
    # the host answered: a broken body, or a body too large, is not the connection failing
    assert not is_connection_failure(_failed(ProtocolError("broken response")))
    assert not is_connection_failure(_failed(ConnectError("reset mid-body"), status=200))
    assert not is_connection_failure(_failed(BodyTooLargeError("max-bytes")))


def test_zero_turns_it_off() -> None:
    limit = HostErrorLimit(0)
    for _ in range(100):
        assert limit.observe(DEAD, REFUSED) is None
    assert limit.given_up(DEAD) is None


def test_other_failures_neither_count_nor_reset() -> None:
    limit = HostErrorLimit(2)
    limit.observe(DEAD, REFUSED)
    limit.observe(DEAD, _failed(ProtocolError("bad status line")))
    assert limit.observe(DEAD, REFUSED) is not None


def test_a_given_up_host_expires_queued_delayed_and_later_jobs(clock) -> None:
    scheduler = Scheduler(LocalLimiter(RateLimit(), clock=clock), clock=clock)
    queued = [_job(DEAD) for _ in range(3)]
    live = [_job(LIVE) for _ in range(2)]
    for pending in (*queued, *live):
        scheduler.add(pending)
    retried = _job(DEAD)
    retried.attempts = 2
    scheduler.retry_later(retried, 30.0)
    scheduler.give_up(DEAD, "host dead.test:80 given up")
    later = _job(DEAD)
    scheduler.add(later)
    expired = {id(e.pending): e.error for e in scheduler.expired}
    assert set(expired) == {id(p) for p in (*queued, retried, later)}
    assert set(expired.values()) == {"host dead.test:80 given up"}
    started = []
    while (pending := scheduler.next_ready()[0]) is not None:
        started.append(pending)
    assert started == live  # the other host goes on
    assert len(scheduler) == 0
