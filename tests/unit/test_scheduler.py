"""Scheduler: per-host queues round-robin, retry delays, parked hosts, expiry of paused hosts."""

from __future__ import annotations

import math
from itertools import count

import pytest

from poolfetch.core.config import RateLimit
from poolfetch.core.limiter import LocalLimiter
from poolfetch.core.limiter_api import GLOBAL, HOST_PAUSED, HOST_RATE, Admission
from poolfetch.core.models import FetchJob
from poolfetch.core.scheduler import PendingJob, Scheduler

_seq = count()


def _job(host: str, path: str = "") -> PendingJob:
    name = host.split(":", maxsplit=1)[0]
    return PendingJob(FetchJob(seq=next(_seq), url=f"http://{name}/{path}", host=host))


def _setup(clock, **limits) -> tuple[LocalLimiter, Scheduler]:
    limiter = LocalLimiter(RateLimit(**limits), clock=clock)
    return limiter, Scheduler(limiter, clock=clock)


def _drain_ready(scheduler: Scheduler) -> list[PendingJob]:
    out = []
    while True:
        pending, _ = scheduler.next_ready()
        if pending is None:
            return out
        out.append(pending)


def test_round_robin_across_hosts(clock):
    _, scheduler = _setup(clock)
    for host in ("a:80", "b:80", "c:80"):
        for i in range(3):
            scheduler.add(_job(host, str(i)))
    hosts = [p.job.host for p in _drain_ready(scheduler)]
    assert hosts == ["a:80", "b:80", "c:80"] * 3


def test_jobs_of_one_host_keep_input_order(clock):
    _, scheduler = _setup(clock)
    jobs = [_job("a:80", str(i)) for i in range(5)]
    for job in jobs:
        scheduler.add(job)
    assert _drain_ready(scheduler) == jobs


def test_paused_host_does_not_block_other_hosts(clock):
    limiter, scheduler = _setup(clock)
    limiter.pause_host("slow:80", 10.0)
    for i in range(5):
        scheduler.add(_job("slow:80", str(i)))
    for i in range(5):
        scheduler.add(_job("fast:80", str(i)))
    ready = _drain_ready(scheduler)
    assert [p.job.host for p in ready] == ["fast:80"] * 5
    pending, wait = scheduler.next_ready()
    assert pending is None
    assert wait == pytest.approx(10.0)
    clock.advance(10.0)
    assert [p.job.host for p in _drain_ready(scheduler)] == ["slow:80"] * 5


def test_blocked_by_names_the_pause_on_the_first_refusal(clock):
    limiter, scheduler = _setup(clock)
    limiter.pause_host("slow:80", 10.0)
    scheduler.add(_job("slow:80"))
    assert scheduler.next_ready()[0] is None
    assert scheduler.blocked_by == HOST_PAUSED


def test_blocked_by_still_names_the_pause_while_the_host_is_parked(clock):
    limiter, scheduler = _setup(clock)
    limiter.pause_host("slow:80", 10.0)
    scheduler.add(_job("slow:80"))
    scheduler.add(_job("fast:80"))
    assert scheduler.next_ready()[0].job.host == "fast:80"
    pending, wait = scheduler.next_ready()
    assert pending is None
    assert wait == pytest.approx(10.0)
    assert scheduler.blocked_by == HOST_PAUSED


def test_new_jobs_of_a_parked_host_wait_with_it(clock):
    limiter, scheduler = _setup(clock)
    limiter.pause_host("slow:80", 5.0)
    scheduler.add(_job("slow:80"))
    assert scheduler.next_ready()[0] is None
    scheduler.add(_job("slow:80"))
    scheduler.add(_job("fast:80"))
    assert [p.job.host for p in _drain_ready(scheduler)] == ["fast:80"]
    clock.advance(5.0)
    assert len(_drain_ready(scheduler)) == 2


def test_retry_later_respects_the_not_before_time(clock):
    _, scheduler = _setup(clock)
    retry = _job("a:80")
    scheduler.retry_later(retry, 5.0)
    pending, wait = scheduler.next_ready()
    assert pending is None
    assert wait == pytest.approx(5.0)
    clock.advance(4.9)
    pending, wait = scheduler.next_ready()
    assert pending is None
    assert wait == pytest.approx(0.1)
    clock.advance(0.1)
    assert scheduler.next_ready()[0] is retry


def test_delayed_retry_does_not_hold_back_ready_jobs(clock):
    _, scheduler = _setup(clock)
    scheduler.retry_later(_job("a:80", "retry"), 30.0)
    fresh = _job("a:80", "fresh")
    scheduler.add(fresh)
    assert scheduler.next_ready()[0] is fresh


def test_connection_cap_parks_host_until_released(clock):
    limiter, scheduler = _setup(clock, per_host_connections=1)
    first, second = _job("a:80", "1"), _job("a:80", "2")
    other = _job("b:80")
    scheduler.add(first)
    scheduler.add(second)
    assert scheduler.next_ready()[0] is first
    scheduler.add(other)
    assert scheduler.next_ready()[0] is other  # a is at its cap, b goes on
    pending, wait = scheduler.next_ready()
    assert pending is None
    assert wait == math.inf  # only a finished attempt can unblock it
    limiter.release("a:80")
    scheduler.host_released("a:80")
    assert scheduler.next_ready()[0] is second


def test_host_paused_longer_than_max_pause_expires_its_jobs(clock):
    limiter = LocalLimiter(RateLimit(), clock=clock)
    scheduler = Scheduler(
        limiter, max_pause=60.0, pause_error=lambda s: f"paused {s:.0f} s", clock=clock
    )
    limiter.pause_host("gone:80", 600.0)
    doomed = [_job("gone:80", str(i)) for i in range(3)]
    for job in doomed:
        scheduler.add(job)
    kept = _job("ok:80")
    scheduler.add(kept)
    assert len(scheduler) == 4
    assert _drain_ready(scheduler) == [kept]
    assert [e.pending for e in scheduler.expired] == doomed
    assert {e.error for e in scheduler.expired} == {"paused 600 s"}
    assert len(scheduler) == 0


def test_pause_within_max_pause_is_waited_out(clock):
    limiter = LocalLimiter(RateLimit(), clock=clock)
    scheduler = Scheduler(limiter, max_pause=60.0, clock=clock)
    limiter.pause_host("a:80", 59.0)
    job = _job("a:80")
    scheduler.add(job)
    assert scheduler.next_ready() == (None, pytest.approx(59.0))
    assert scheduler.expired == []
    clock.advance(59.0)
    assert scheduler.next_ready()[0] is job


def test_len_counts_held_jobs(clock):
    _, scheduler = _setup(clock)
    assert len(scheduler) == 0
    jobs = [_job("a:80", str(i)) for i in range(3)]
    for job in jobs:
        scheduler.add(job)
    assert len(scheduler) == 3
    pending, _ = scheduler.next_ready()
    assert len(scheduler) == 2  # in flight is not held
    scheduler.retry_later(pending, 10.0)
    assert len(scheduler) == 3
    clock.advance(10.0)
    assert len(_drain_ready(scheduler)) == 3
    assert len(scheduler) == 0


def test_finite_wait_when_only_rate_limits_block(clock):
    _, scheduler = _setup(clock, per_host_qps=2)
    scheduler.add(_job("a:80", "1"))
    scheduler.add(_job("a:80", "2"))
    assert scheduler.next_ready()[0] is not None
    pending, wait = scheduler.next_ready()
    assert pending is None
    assert wait == pytest.approx(0.5)
    clock.advance(wait)
    assert scheduler.next_ready()[0] is not None


def test_global_limit_gives_its_wait(clock):
    _, scheduler = _setup(clock, qps=4)
    for host in ("a:80", "b:80"):
        scheduler.add(_job(host))
    assert scheduler.next_ready()[0] is not None
    pending, wait = scheduler.next_ready()
    assert pending is None
    assert scheduler.blocked_by == GLOBAL
    assert wait == pytest.approx(0.25)


def test_rate_limited_hosts_share_starts_fairly(clock):
    _, scheduler = _setup(clock, per_host_qps=1)
    for host in ("a:80", "b:80"):
        for i in range(10):
            scheduler.add(_job(host, str(i)))
    started = []
    for _ in range(500):  # 5 s in 10 ms steps
        started.extend(p.job.host for p in _drain_ready(scheduler))
        clock.advance(0.01)
    assert started.count("a:80") in (5, 6)
    assert started.count("b:80") in (5, 6)


def test_drain_returns_every_held_job(clock):
    limiter, scheduler = _setup(clock)
    limiter.pause_host("p:80", 5.0)
    scheduler.add(_job("p:80"))
    scheduler.add(_job("a:80"))
    scheduler.next_ready()  # parks p
    scheduler.retry_later(_job("r:80"), 3.0)
    assert len(scheduler.drain()) == 2
    assert len(scheduler) == 0
    assert scheduler.next_ready() == (None, math.inf)


def test_held_counts_a_hosts_queued_and_delayed_jobs_not_those_started(clock):
    _, scheduler = _setup(clock)
    for i in range(3):
        scheduler.add(_job("a:80", str(i)))
    scheduler.add(_job("b:80"))
    assert (scheduler.held("a:80"), scheduler.held("b:80"), scheduler.held("c:80")) == (3, 1, 0)
    first, _ = scheduler.next_ready()
    assert first is not None and scheduler.held("a:80") == 2  # started: the limiter counts it
    scheduler.retry_later(first, 5.0)
    assert scheduler.held("a:80") == 3
    clock.advance(5.0)
    _drain_ready(scheduler)
    assert scheduler.held("a:80") == 0
    scheduler.retry_later(first, 1.0)
    scheduler.give_up("a:80", "gone")
    assert scheduler.held("a:80") == 0


class _RampLimiter:
    """A host limited to one start per ``spacing`` seconds, a spacing a test may change (as
    the adaptive rate changes it on an answer)."""

    def __init__(self, clock, spacing: float) -> None:
        self._clock = clock
        self.spacing = spacing
        self._last = -math.inf

    def try_acquire(self, host: str) -> Admission:
        due = self._last + self.spacing
        if self._clock() >= due:
            self._last = self._clock()
            return Admission(0.0)
        return Admission(due - self._clock(), HOST_RATE)


def test_a_host_parked_for_its_rate_is_asked_again_when_an_answer_comes(clock):
    limiter = _RampLimiter(clock, spacing=0.25)
    scheduler = Scheduler(limiter, clock=clock)
    for i in range(3):
        scheduler.add(_job("a:80", str(i)))
    assert scheduler.next_ready()[0] is not None
    assert scheduler.next_ready() == (None, pytest.approx(0.25))  # parked at 4 a second
    clock.advance(0.1)
    limiter.spacing = 0.1  # the answer raised the rate: due now, not in 0.15 s
    scheduler.host_released("a:80")
    assert scheduler.next_ready()[0] is not None
    pending, wait = scheduler.next_ready()  # parked again, at the new rate
    assert pending is None and wait == pytest.approx(0.1)
    clock.advance(0.15)  # the first parking's time passes: nothing is started twice
    assert scheduler.next_ready()[0] is not None
    assert scheduler.next_ready()[0] is None
    assert len(scheduler) == 0
